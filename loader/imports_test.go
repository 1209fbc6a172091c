package loader

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The loader process parses no YAML, serves no HTTP and writes no audit
// log: nothing it imports, directly or not, can. (The binary holds the
// worker's code too; this is about what the loader's code can reach.)
func TestLoaderImportsNoPolicyHTTPOrAudit(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %v", deps)
	}
	forbidden := []string{"yaml", "net/http", "prometheus", "kong",
		"pci-segment/policy", "pci-segment/datapath", "pci-segment/audit", "pci-segment/metrics",
		"pci-segment/worker", "pci-segment/confine"}
	for _, d := range deps {
		for _, f := range forbidden {
			if strings.Contains(d, f) {
				t.Errorf("the loader imports %s (%s)", d, f)
			}
		}
	}
}
