// These tests measure the service pair, its sysusers.d and tmpfiles.d
// entries and the MAC drop-ins with the real systemd-analyze.
package systemd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

func analyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err != nil {
		testenv.Unavailable(t, "systemd-analyze not installed (Debian package systemd)")
	}
	return p
}

// Installed by make install into a DESTDIR, the units verify clean.
func TestUnitsVerifyCleanInstalledIntoADestdir(t *testing.T) {
	tool := analyze(t)
	root := t.TempDir()
	if out, err := exec.Command("make", "-C", "..", "install", "DESTDIR="+root).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	// ExecReload's /bin/kill is the system's, not ours.
	kill, _ := exec.LookPath("kill")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	if b, err := os.ReadFile(kill); err == nil {
		os.WriteFile(filepath.Join(root, "bin", "kill"), b, 0o755)
	}
	units := []string{"/usr/local/lib/systemd/system/pci-segment.socket", "/usr/local/lib/systemd/system/pci-segment.service"}
	out, err := exec.Command(tool, append([]string{"verify", "--root=" + root}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The loader's unit exposes at most 2.0 by systemd's own measure.
func TestServiceExposureAtMostTwo(t *testing.T) {
	tool := analyze(t)
	out, err := exec.Command(tool, "security", "--offline=true", "pci-segment.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for pci-segment.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security --offline=true: exposure %.1f", score)
	if score > 2.0 {
		t.Errorf("exposure %.1f, want at most 2.0:\n%s", score, out)
	}
}

// The bounding set the unit gives is what the loader checks for: no more,
// no less.
func TestUnitCapabilitiesAreTheLoadersNeeds(t *testing.T) {
	b, err := os.ReadFile("pci-segment.service")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CapabilityBoundingSet=(.*)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no CapabilityBoundingSet")
	}
	got := strings.Fields(string(m[1]))
	want := []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("CapabilityBoundingSet %v, want %v (loader/caps.go requiredCaps)", got, want)
	}
}
