package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/privilege"
)

// The development overrides keep the worker at uid 0 or without its
// filter, never with a capability, and each one in effect is said three
// times: a warning at start, an audit record, and a status line.
func TestDevelopmentOverridesAreWarnedAuditedAndShown(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name      string
		env, args []string
		overrides []string // as audit resources and status names
		// ownFilter: the worker installs its filter on top of the
		// loader's, which it inherits whatever the overrides say.
		ownFilter bool
	}{
		{"skip drop and disable seccomp",
			[]string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1", "PCI_SEGMENT_DISABLE_SECCOMP=1"}, nil,
			[]string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1", "PCI_SEGMENT_DISABLE_SECCOMP=1"}, false},
		{"allow root", nil, []string{"--allow-root"}, []string{"--allow-root"}, true},
		// Confinement expected of both processes, on a kernel with no
		// SELinux or AppArmor: only the skip lets them start.
		{"skip MAC verification",
			[]string{"PCI_SEGMENT_SELINUX_PROFILE=pci_segment_t", "PCI_SEGMENT_APPARMOR_PROFILE=pci-segment", "PCI_SEGMENT_SKIP_MAC_VERIFY=1"}, []string{"--allow-root"},
			[]string{"--allow-root", "PCI_SEGMENT_SKIP_MAC_VERIFY=1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := lab.New(t)
			e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}),
				enforceOpts{noAccount: true, env: tc.env, args: tc.args})
			loaderPID, workerPID := e.pids(t)

			p, err := privilege.ReadProcess(workerPID)
			if err != nil {
				t.Fatal(err)
			}
			ld, err := privilege.ReadProcess(loaderPID)
			if err != nil {
				t.Fatal(err)
			}
			filters := ld.SeccompFilters
			if tc.ownFilter {
				filters++
			}
			for _, th := range append([]privilege.ThreadState{p.ThreadState}, p.Threads...) {
				if err := (privilege.Identity{}).Check(th); err != nil {
					t.Errorf("the override keeps uid 0 and no groups: %v", err)
				}
				if th.CapInh|th.CapPrm|th.CapEff|th.CapBnd|th.CapAmb != 0 {
					t.Errorf("thread %d holds capabilities under an override: %+v", th.TID, th)
				}
				if !th.NoNewPrivs || th.Seccomp != privilege.SeccompFilter || th.SeccompFilters != filters {
					t.Errorf("thread %d: NoNewPrivs %v, seccomp %v with %d filters; want NoNewPrivs and %d filters (the loader has %d)",
						th.TID, th.NoNewPrivs, th.Seccomp, th.SeccompFilters, filters, ld.SeccompFilters)
				}
			}

			out := e.out.String()
			var audited []string
			for _, r := range e.auditRecords(t, "override_in_effect") {
				audited = append(audited, r.Resource)
			}
			s := statusOf(t, e, 0, 0)
			for _, o := range tc.overrides {
				name, value, _ := strings.Cut(o, "=")
				if !strings.Contains(out, "development override in effect") || !strings.Contains(out, o) {
					t.Errorf("no start warning names %s:\n%s", o, out)
				}
				if !slices.Contains(audited, o) {
					t.Errorf("override records %v lack %s", audited, o)
				}
				if !slices.ContainsFunc(s.Overrides, func(so statusOverride) bool {
					return so.Name == name && so.Value == value && so.InEffect
				}) {
					t.Errorf("status overrides %+v lack %s in effect", s.Overrides, o)
				}
			}
		})
	}
}

func TestConflictingOverridesStartNoWorker(t *testing.T) {
	requireRoot(t)
	user, _ := lab.ServiceAccount(t)
	l := lab.New(t)
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}),
		enforceOpts{noAccount: true, env: []string{"PCI_SEGMENT_PRIVILEGE_USER=" + user}, args: []string{"--allow-root"}})
	failsToStart(t, l, e, "conflicting overrides")
	if strings.Contains(e.out.String(), "worker started") {
		t.Errorf("a worker was started:\n%s", e.out.String())
	}
}

// Confinement that is not in force is an error in the process expected to
// be confined, before any worker gets a map: the loader's, before it starts
// one; the worker's, before it applies anything (so nothing is attached).
// This kernel has neither SELinux nor AppArmor active, which is what the
// tests check first.
func TestUnverifiedConfinementStopsTheStart(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		t.Skip("SELinux is active here: these cases need a kernel without it")
	}
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err == nil {
		t.Skip("AppArmor is active here: these cases need a kernel without it")
	}
	for _, tc := range []struct {
		name, env string
		want      []string
		worker    bool // a worker was started (and refused)
	}{
		{"loader's SELinux domain", "PCI_SEGMENT_SELINUX_PROFILE=pci_segment_t",
			[]string{"loader: not confined as expected", "SELinux not active", `docs/HARDENING.md, "SELinux"`}, false},
		{"loader's AppArmor profile", "PCI_SEGMENT_APPARMOR_PROFILE=pci-segment",
			[]string{"loader: not confined as expected", "AppArmor not active", `docs/HARDENING.md, "AppArmor"`}, false},
		{"worker's AppArmor profile", "PCI_SEGMENT_WORKER_APPARMOR_PROFILE=pci-segment//worker",
			[]string{"worker: not confined as expected", "AppArmor not active", "nothing was attached"}, true},
		{"a malformed skip", "PCI_SEGMENT_SKIP_MAC_VERIFY=off", []string{"PCI_SEGMENT_SKIP_MAC_VERIFY"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := lab.New(t)
			e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{env: []string{tc.env}})
			failsToStart(t, l, e, tc.want...)
			if started := strings.Contains(e.out.String(), "worker started"); started != tc.worker {
				t.Errorf("worker started: %v, want %v:\n%s", started, tc.worker, e.out.String())
			}
		})
	}
}
