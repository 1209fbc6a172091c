package loader

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

// The binary every worker runs from must be root's alone: whoever could
// write it would write the next worker's code. It is held above fd 3,
// where a new worker's channel goes.
func TestWorkerBinaryIsRootsAlone(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	mk := func(name string, mode uint32, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, mode); err != nil { // raw bits: setuid too
			t.Fatal(err)
		}
		return p
	}
	good := mk("good", 0o755, 0)
	f, err := workerBinary(good)
	if err != nil {
		t.Fatalf("a root 0755 binary refused: %v", err)
	}
	if f.Fd() < 10 {
		t.Errorf("held on fd %d, where a worker's own descriptors go", f.Fd())
	}
	f.Close()
	for name, p := range map[string]string{
		"writable by all":   mk("w-all", 0o757, 0),
		"writable by group": mk("w-group", 0o775, 0),
		"the account's":     mk("nobody", 0o755, 65534),
		"setuid":            mk("setuid", 0o4755, 0),
		"not executable":    mk("noexec", 0o750, 0),
		"a directory":       dir,
		"missing":           filepath.Join(dir, "missing"),
	} {
		if f, err := workerBinary(p); err == nil {
			f.Close()
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "worker binary") {
			t.Errorf("%s: %v, want it to name the worker binary", name, err)
		}
	}
}
