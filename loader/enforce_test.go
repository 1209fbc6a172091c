package loader

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/testenv"
)

// A size out of bounds is a usage error, reported before anything is
// checked or loaded (so even without root).
func TestEnforceRefusesSizesOutOfBoundsFirst(t *testing.T) {
	err := Enforce(Config{Sizes: bpf.Sizes{Prefixes: bpf.MaxSizePrefixes + 1}}, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "--max-prefixes") {
		t.Fatalf("Enforce with too many prefixes: %v", err)
	}
}

// A worker binary that cannot be used stops the start before anything is
// touched, naming the flag and the file.
func TestEnforceNamesAnUnusableWorkerBinary(t *testing.T) {
	testenv.RequireRoot(t)
	missing := filepath.Join(t.TempDir(), "pci-segment")
	err := Enforce(Config{WorkerBinary: missing}, hclog.NewNullLogger())
	if err == nil || !strings.Contains(err.Error(), "--worker-binary") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Enforce with a missing worker binary: %v", err)
	}
}
