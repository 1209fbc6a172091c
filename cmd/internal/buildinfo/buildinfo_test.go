package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersionNamesTheBinaryAndTheToolchain(t *testing.T) {
	v := Version("pci-segment-loader")
	if !strings.HasPrefix(v, "pci-segment-loader ") || !strings.HasSuffix(v, runtime.Version()) {
		t.Errorf("Version = %q, want the name first and %s last", v, runtime.Version())
	}
}
