package loader

import (
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/privilege"
)

func TestWorkerIsToldTheSizes(t *testing.T) {
	s := bpf.DefaultSizes
	s.Prefixes, s.PortEntries, s.Flows = 3, 200_000, 1000
	got := strings.Join(workerArgs(Config{Sizes: s, Policies: []string{"/p"}}, privilege.Account{}), " ")
	for _, want := range []string{"--max-prefixes 3 ", "--max-port-entries 200000 ", "--max-flows 1000", "-f /p"} {
		if !strings.Contains(got, want) {
			t.Errorf("worker args %q lack %q", got, want)
		}
	}
}

// A size out of bounds is a usage error, reported before anything is
// checked or loaded (so even without root).
func TestEnforceRefusesSizesOutOfBoundsFirst(t *testing.T) {
	err := Enforce(Config{Sizes: bpf.Sizes{Prefixes: bpf.MaxSizePrefixes + 1}}, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "--max-prefixes") {
		t.Fatalf("Enforce with too many prefixes: %v", err)
	}
}
