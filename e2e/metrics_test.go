package e2e

import (
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/lab"
)

// What the worker exposes in the lab: the policy and links in force, its
// own privilege state as /proc has it, the overrides; and /readyz ready
// once a policy is applied on an attached link.
func TestMetricsAndReadinessTellTheTruth(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	var scrape string
	for i := 0; i < 50 && !strings.Contains(scrape, "pci_segment_enforcing{"); i++ {
		scrape = e.scrape(t)
	}
	for series, want := range map[string]float64{
		`pci_segment_enforcing{interface="` + l.HostIf + `"}`:                   1,
		"pci_segment_policies":                                                  1,
		"pci_segment_rules":                                                     2,
		"pci_segment_worker_effective_capabilities":                             0,
		"pci_segment_worker_seccomp_mode":                                       2,
		"pci_segment_worker_no_new_privs":                                       1,
		`pci_segment_override_in_effect{override="PCI_SEGMENT_PRIVILEGE_USER"}`: 1,
		"pci_segment_monitor_mode":                                              0,
	} {
		if got := metricValue(t, scrape, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if !strings.Contains(scrape, "go_build_info{") {
		t.Error("no build info")
	}
	if body, code := e.get(t, "/readyz"); code != 200 || !strings.Contains(body, l.HostIf) {
		t.Errorf("/readyz: %d %q, want 200 naming %s", code, body, l.HostIf)
	}
	if body, code := e.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, body)
	}
}
