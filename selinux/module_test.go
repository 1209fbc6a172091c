// Package selinux holds the SELinux policy module for pci-segment
// (pci_segment.te, .fc, .if): a domain for the loader, pci_segment_t, and a
// narrower, bounded one for the worker, pci_segment_worker_t. This test
// compiles it with Debian's policy development tool chain.
package selinux

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

func TestModuleCompiles(t *testing.T) {
	const makefile = "/usr/share/selinux/devel/Makefile"
	if _, err := os.Stat(makefile); err != nil {
		testenv.Unavailable(t, "SELinux policy development files not installed (Debian package selinux-policy-dev)")
	}
	dir := t.TempDir()
	for _, f := range []string{"pci_segment.te", "pci_segment.fc", "pci_segment.if"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	out, err := exec.Command("make", "-C", dir, "-f", makefile, "pci_segment.pp").CombinedOutput()
	if err != nil {
		t.Fatalf("build the module: %v\n%s", err, out)
	}
	if st, err := os.Stat(filepath.Join(dir, "pci_segment.pp")); err != nil || st.Size() == 0 {
		t.Fatalf("no module package: %v", err)
	}
}
