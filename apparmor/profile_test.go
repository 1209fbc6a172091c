// Package apparmor holds the AppArmor profile for pci-segment: the loader's
// profile "pci-segment" and the worker's child profile "pci-segment//worker",
// stacked on exec so that it works under NoNewPrivs. This test parses it
// with apparmor_parser, without loading it.
package apparmor

import (
	"os"
	"os/exec"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

func TestProfileParses(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		testenv.Unavailable(t, "apparmor_parser not installed (Debian package apparmor)")
	}
	// -Q: compile only, never load; -K: no cache. -M: the features of the
	// kernels Debian's parser targets (stacking among them), which a test
	// host without AppArmor cannot report.
	const features = "/usr/share/apparmor-features/features"
	if _, err := os.Stat(features); err != nil {
		testenv.Unavailable(t, features+" missing (Debian package apparmor)")
	}
	if out, err := exec.Command(parser, "-Q", "-K", "-M", features, "-I", "/etc/apparmor.d", "pci-segment").CombinedOutput(); err != nil {
		t.Fatalf("apparmor_parser: %v\n%s", err, out)
	}
}
