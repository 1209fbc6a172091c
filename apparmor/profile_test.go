// Package apparmor holds the AppArmor profile for pci-segment: the loader's
// profile "pci-segment" and the worker's child profile "pci-segment//worker",
// stacked on exec so that it works under NoNewPrivs. This test parses it
// with apparmor_parser, without loading it.
package apparmor

import (
	"os/exec"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

func TestProfileParses(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		testenv.Unavailable(t, "apparmor_parser not installed (Debian package apparmor)")
	}
	// -Q: compile only, never load; -K: no cache.
	if out, err := exec.Command(parser, "-Q", "-K", "-I", "/etc/apparmor.d", "pci-segment").CombinedOutput(); err != nil {
		t.Fatalf("apparmor_parser: %v\n%s", err, out)
	}
}
