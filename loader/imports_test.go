package loader

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The loader process parses no YAML, serves no HTTP and writes no audit
// log: nothing this package imports, directly or not, can, nor anything
// pci-segment-loader links, the binary the root process runs.
func TestLoaderLinksNoPolicyHTTPOrAudit(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	forbidden := []string{"yaml", "net/http", "prometheus", "html/template",
		"pci-segment/policy", "pci-segment/datapath", "pci-segment/audit", "pci-segment/metrics",
		"pci-segment/worker", "pci-segment/confine", "pci-segment/report", "pci-segment/status"}
	for _, pkg := range []string{".", "../cmd/pci-segment-loader"} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s listed only %v", pkg, deps)
		}
		for _, d := range deps {
			for _, f := range forbidden {
				if strings.Contains(d, f) {
					t.Errorf("%s links %s (%s)", pkg, d, f)
				}
			}
		}
	}
}
