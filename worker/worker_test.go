package worker

import (
	"slices"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
)

// sealed is a worker process as the drop leaves it: the service account
// in every id field and on every thread, no capabilities, NoNewPrivs and
// the filter.
func sealed(id privilege.Identity, threads int) privilege.Process {
	st := privilege.ThreadState{TID: 100, TGID: 100,
		UID:    privilege.IDs{Real: id.UID, Effective: id.UID, Saved: id.UID, FS: id.UID},
		GID:    privilege.IDs{Real: id.GID, Effective: id.GID, Saved: id.GID, FS: id.GID},
		Groups: slices.Clone(id.Groups), NoNewPrivs: true, Seccomp: privilege.SeccompFilter, SeccompFilters: 1}
	p := privilege.Process{ThreadState: st}
	for i := range threads {
		t := st
		t.TID = 100 + i
		t.Groups = slices.Clone(id.Groups)
		p.Threads = append(p.Threads, t)
	}
	return p
}

func TestCheckUnprivilegedHoldsEveryThreadToTheIdentity(t *testing.T) {
	id := privilege.Identity{UID: 997, GID: 997, Groups: []uint32{997, 1001}}
	if err := checkUnprivileged(sealed(id, 104), id, false, true); err != nil {
		t.Fatalf("a sealed worker is refused: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(p *privilege.Process)
		want string
	}{
		// A process whose threads all agree with each other, but not
		// with the account: comparing threads alone would pass it.
		{"every thread in another group", func(p *privilege.Process) {
			p.Groups = append(p.Groups, 0)
			for i := range p.Threads {
				p.Threads[i].Groups = append(p.Threads[i].Groups, 0)
			}
		}, "supplementary groups"},
		{"every thread with saved uid 0", func(p *privilege.Process) {
			p.UID.Saved = 0
			for i := range p.Threads {
				p.Threads[i].UID.Saved = 0
			}
		}, "uid"},
		{"one new thread with the loader's gid", func(p *privilege.Process) { p.Threads[103].GID = privilege.IDs{} }, "gid"},
		{"one new thread with a capability", func(p *privilege.Process) { p.Threads[50].CapPrm = 1 << 12 }, "differs from the leader"},
		{"capabilities on every thread", func(p *privilege.Process) {
			p.CapBnd = 1
			for i := range p.Threads {
				p.Threads[i].CapBnd = 1
			}
		}, "capabilities survived"},
		{"no NoNewPrivs", func(p *privilege.Process) {
			p.NoNewPrivs = false
			for i := range p.Threads {
				p.Threads[i].NoNewPrivs = false
			}
		}, "NoNewPrivs"},
		{"no filter", func(p *privilege.Process) {
			p.Seccomp = privilege.SeccompDisabled
			for i := range p.Threads {
				p.Threads[i].Seccomp = privilege.SeccompDisabled
			}
		}, "seccomp is disabled"},
	} {
		p := sealed(id, 104)
		tc.edit(&p)
		if err := checkUnprivileged(p, id, false, true); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckUnprivilegedAllowsRootOnlyUnderAnOverride(t *testing.T) {
	root := privilege.Identity{}
	p := sealed(root, 4)
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "")
	if err := checkUnprivileged(p, root, false, true); err == nil || !strings.Contains(err.Error(), "without a development override") {
		t.Errorf("uid 0 without an override: %v", err)
	}
	if err := checkUnprivileged(p, root, true, true); err != nil {
		t.Errorf("uid 0 under --allow-root: %v", err)
	}
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "1")
	if err := checkUnprivileged(p, root, false, true); err != nil {
		t.Errorf("uid 0 under PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1: %v", err)
	}
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "off")
	if err := checkUnprivileged(p, root, false, true); err == nil || !strings.Contains(err.Error(), "PCI_SEGMENT_SKIP_PRIVILEGE_DROP") {
		t.Errorf("uid 0 under PCI_SEGMENT_SKIP_PRIVILEGE_DROP=off: %v, want the bad value named", err)
	}
	// The overrides keep uid 0, never a capability.
	p.CapEff = 1
	for i := range p.Threads {
		p.Threads[i].CapEff = 1
	}
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "1")
	if err := checkUnprivileged(p, root, true, true); err == nil {
		t.Error("uid 0 with a capability passed under the overrides")
	}
}

func TestOverridesListsEachInEffect(t *testing.T) {
	for _, v := range []string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "PCI_SEGMENT_PRIVILEGE_USER", "PCI_SEGMENT_PRIVILEGE_GROUP", sandbox.DisableEnv} {
		t.Setenv(v, "")
	}
	if got := overrides(Config{}, false); len(got) != 0 {
		t.Errorf("no override set, overrides = %v", got)
	}
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "0")
	if got := overrides(Config{}, false); len(got) != 0 {
		t.Errorf("PCI_SEGMENT_SKIP_PRIVILEGE_DROP=0 is not in effect, overrides = %v", got)
	}
	t.Setenv("PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "true")
	t.Setenv("PCI_SEGMENT_PRIVILEGE_USER", "dev")
	t.Setenv(sandbox.DisableEnv, "1")
	got := overrides(Config{AllowRoot: true}, true)
	want := []string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP=true", "PCI_SEGMENT_PRIVILEGE_USER=dev", sandbox.DisableEnv + "=1", "--allow-root"}
	if !slices.Equal(got, want) {
		t.Errorf("overrides = %v, want %v", got, want)
	}
}
