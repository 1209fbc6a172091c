package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// Both binaries name their build, the same one: an auditor checks the
// root half as readily as the CLI.
func TestBothBinariesNameTheSameBuild(t *testing.T) {
	requireRoot(t)
	builds := map[string]string{}
	for _, name := range []string{"pci-segment", "pci-segment-loader"} {
		out, err := exec.Command(binary+strings.TrimPrefix(name, "pci-segment"), "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", name, err, out)
		}
		build, ok := strings.CutPrefix(strings.TrimSpace(string(out)), name+" ")
		if !ok || build == "" {
			t.Fatalf("%s --version printed %q, want its name and build", name, out)
		}
		builds[name] = build
	}
	if builds["pci-segment"] != builds["pci-segment-loader"] {
		t.Errorf("the binaries name different builds: %q", builds)
	}
}
