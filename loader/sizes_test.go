package loader

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
)

func TestWorkerIsToldTheSizesThatDifferFromTheDefaults(t *testing.T) {
	if got := sizeArgs(bpf.DefaultSizes); len(got) != 0 {
		t.Errorf("defaults: %q, want no flags", got)
	}
	s := bpf.DefaultSizes
	s.Prefixes, s.Flows = 3, 1000
	want := []string{"--max-prefixes", "3", "--max-flows", "1000"}
	if got := sizeArgs(s); !slices.Equal(got, want) {
		t.Errorf("sizeArgs(%+v) = %q, want %q", s, got, want)
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
