package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/privilege"
)

// The JSON of `pci-segment status -o json`, spelled out here rather than
// decoded into the status package's types, so that a renamed field breaks
// this test as it would break an auditor's script.
type statusJSON struct {
	Viewer struct {
		UID  int  `json:"uid"`
		Root bool `json:"root"`
	} `json:"viewer"`
	PinDir    string           `json:"pin_dir"`
	StateDir  string           `json:"state_dir"`
	AuditDir  string           `json:"audit_dir"`
	Loader    *statusProcess   `json:"loader"`
	Worker    *statusProcess   `json:"worker"`
	Overrides []statusOverride `json:"overrides"`
	Landlock  *statusLandlock  `json:"landlock"`
	Pins      []statusPin      `json:"pins"`
	Links     []statusLink     `json:"links"`
	Policy    *statusPolicy    `json:"policy"`
	Counters  *struct {
		Ingress struct {
			AllowPackets uint64 `json:"allow_packets"`
		} `json:"ingress"`
	} `json:"counters"`
	Findings    []string `json:"findings"`
	Unavailable []struct {
		What   string `json:"what"`
		Reason string `json:"reason"`
	} `json:"unavailable"`
}

type statusIDs struct {
	Real      uint32 `json:"real"`
	Effective uint32 `json:"effective"`
	Saved     uint32 `json:"saved"`
	FS        uint32 `json:"fs"`
}

type statusCapSets struct {
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable"`
	Bounding    []string `json:"bounding"`
	Ambient     []string `json:"ambient"`
}

type statusMasks struct {
	Effective   string `json:"effective"`
	Permitted   string `json:"permitted"`
	Inheritable string `json:"inheritable"`
	Bounding    string `json:"bounding"`
	Ambient     string `json:"ambient"`
}

type statusAccount struct {
	ID   uint32 `json:"id"`
	Name string `json:"name"`
}

type statusProcess struct {
	Role         string          `json:"role"`
	PID          int             `json:"pid"`
	PPID         int             `json:"ppid"`
	Cmdline      []string        `json:"cmdline"`
	User         *statusAccount  `json:"user"`
	Group        *statusAccount  `json:"group"`
	Groups       []statusAccount `json:"groups"`
	UIDs         *statusIDs      `json:"uids"`
	GIDs         *statusIDs      `json:"gids"`
	Capabilities statusCapSets   `json:"capabilities"`
	CapMasks     statusMasks     `json:"cap_masks"`
	NoNewPrivs   bool            `json:"no_new_privs"`
	Seccomp      struct {
		Mode    string `json:"mode"`
		Filters int    `json:"filters"`
	} `json:"seccomp"`
	Threads            int      `json:"threads"`
	ThreadsDiffer      string   `json:"threads_differ"`
	ThreadsHoldingLess []string `json:"threads_holding_less"`
	MACLabel           string   `json:"mac_label"`
	BPF                *struct {
		Maps     []statusObject `json:"maps"`
		Programs []statusObject `json:"programs"`
		Links    []statusObject `json:"links"`
	} `json:"bpf"`
}

type statusObject struct {
	FD         int    `json:"fd"`
	ID         uint32 `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Access     string `json:"access"`
	MaxEntries uint32 `json:"max_entries"`
	ProgramID  uint32 `json:"program_id"`
	Ifindex    uint32 `json:"ifindex"`
	AttachType string `json:"attach_type"`
}

type statusOverride struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	InEffect bool   `json:"in_effect"`
	Source   string `json:"source"`
}

type statusLandlock struct {
	File    string `json:"file"`
	Current bool   `json:"current"`
	Report  *struct {
		PID        int  `json:"pid"`
		UID        int  `json:"uid"`
		ABI        int  `json:"abi"`
		Enforced   bool `json:"enforced"`
		Filesystem bool `json:"filesystem"`
		Network    bool `json:"network"`
		Paths      []struct {
			Path   string `json:"path"`
			Access string `json:"access"`
		} `json:"paths"`
		BindTCP []struct {
			Port uint16 `json:"port"`
		} `json:"bind_tcp"`
		ConnectTCP []struct {
			Port uint16 `json:"port"`
		} `json:"connect_tcp"`
	} `json:"report"`
}

type statusPin struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	ID    uint32 `json:"id"`
	Error string `json:"error"`
}

type statusLink struct {
	Pin       string `json:"pin"`
	Ifindex   int    `json:"ifindex"`
	Interface string `json:"interface"`
	Direction string `json:"direction"`
	Program   struct {
		ID   uint32 `json:"id"`
		Name string `json:"name"`
	} `json:"program"`
	Position int          `json:"position"`
	Ahead    []statusProg `json:"ahead"`
}

type statusProg struct {
	ID   uint32 `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

type statusPolicy struct {
	Generation uint64   `json:"generation"`
	SetSHA256  string   `json:"set_sha256"`
	Layout     uint32   `json:"layout"`
	Mode       string   `json:"mode"`
	Governed   []string `json:"governed"`
}

// runStatus runs `pci-segment status` for e's instance, as uid (with its
// primary group gid) unless uid is 0, and returns its stdout; stderr goes
// to the log.
func runStatus(t *testing.T, e *enforcer, uid, gid uint32, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"status", "--pin-dir", e.pinDir, "--state-dir", e.stateDir}, args...)...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if stderr.Len() > 0 {
		t.Logf("status stderr:\n%s", stderr.String())
	}
	return out, err
}

func statusOf(t *testing.T, e *enforcer, uid, gid uint32) statusJSON {
	t.Helper()
	out, err := runStatus(t, e, uid, gid, "-o", "json")
	if err != nil {
		t.Fatalf("status -o json as uid %d: %v\n%s", uid, err, out)
	}
	var s statusJSON
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return s
}

// checkAgainstProc compares a process's section with /proc/PID/status.
func checkAgainstProc(t *testing.T, p *statusProcess, role string, pid int) {
	t.Helper()
	if p == nil {
		t.Fatalf("status shows no %s; want pid %d", role, pid)
	}
	if p.PID != pid || p.Role != role {
		t.Errorf("status shows %s pid %d, want %s pid %d", p.Role, p.PID, role, pid)
	}
	proc, err := privilege.ReadProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.UIDs == nil || p.GIDs == nil || p.User == nil {
		t.Fatalf("%s: no uids or gids in %+v", role, p)
	}
	if *p.UIDs != statusIDs(proc.UID) || *p.GIDs != statusIDs(proc.GID) {
		t.Errorf("%s: uids %+v gids %+v, /proc says %+v %+v", role, *p.UIDs, *p.GIDs, proc.UID, proc.GID)
	}
	if p.User.ID != proc.UID.Real || p.Group.ID != proc.GID.Real {
		t.Errorf("%s: user %+v group %+v, /proc says %d %d", role, *p.User, *p.Group, proc.UID.Real, proc.GID.Real)
	}
	var groups []uint32
	for _, g := range p.Groups {
		groups = append(groups, g.ID)
	}
	if !slices.Equal(groups, proc.Groups) && !(len(groups) == 0 && len(proc.Groups) == 0) {
		t.Errorf("%s: groups %v, /proc says %v", role, groups, proc.Groups)
	}
	for _, c := range []struct {
		set      string
		mask     string
		names    []string
		procMask uint64
	}{
		{"CapEff", p.CapMasks.Effective, p.Capabilities.Effective, proc.CapEff},
		{"CapPrm", p.CapMasks.Permitted, p.Capabilities.Permitted, proc.CapPrm},
		{"CapInh", p.CapMasks.Inheritable, p.Capabilities.Inheritable, proc.CapInh},
		{"CapBnd", p.CapMasks.Bounding, p.Capabilities.Bounding, proc.CapBnd},
		{"CapAmb", p.CapMasks.Ambient, p.Capabilities.Ambient, proc.CapAmb},
	} {
		if want := fmt.Sprintf("%016x", c.procMask); c.mask != want {
			t.Errorf("%s: %s %s, /proc says %s", role, c.set, c.mask, want)
		}
		if want := privilege.CapNames(c.procMask); !slices.Equal(c.names, want) && !(len(c.names) == 0 && len(want) == 0) {
			t.Errorf("%s: %s names %v, want %v", role, c.set, c.names, want)
		}
		if c.names == nil {
			t.Errorf("%s: %s names are null, want a list", role, c.set)
		}
	}
	if p.NoNewPrivs != proc.NoNewPrivs {
		t.Errorf("%s: no_new_privs %v, /proc says %v", role, p.NoNewPrivs, proc.NoNewPrivs)
	}
	if p.Seccomp.Mode != proc.Seccomp.String() || p.Seccomp.Filters != proc.SeccompFilters {
		t.Errorf("%s: seccomp %+v, /proc says %v with %d filters", role, p.Seccomp, proc.Seccomp, proc.SeccompFilters)
	}
	if p.Threads < 2 {
		t.Errorf("%s: %d threads; a Go process has several", role, p.Threads)
	}
	if p.MACLabel == "" {
		t.Errorf("%s: no MAC label, want the label or \"none\"", role)
	}
}

// appliedHash is the set hash the audit log's policy_applied record names.
func appliedHash(t *testing.T, e *enforcer) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(e.auditLog(t)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec struct {
			Type    string `json:"type"`
			Details struct {
				SetSHA256 string `json:"set_sha256"`
			} `json:"details"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Type == "policy_applied" {
			return rec.Details.SetSHA256
		}
	}
	t.Fatal("no policy_applied record in the audit log")
	return ""
}

func TestStatusShowsTheSplitAsProcSeesIt(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, workerPID := e.pids(t)

	t.Run("as root", func(t *testing.T) {
		s := statusOf(t, e, 0, 0)
		if !s.Viewer.Root || s.PinDir != filepath.Join(e.pinDir, bpf.Layout) {
			t.Errorf("viewer %+v pin dir %s", s.Viewer, s.PinDir)
		}
		checkAgainstProc(t, s.Loader, "loader", loaderPID)
		checkAgainstProc(t, s.Worker, "worker", workerPID)
		if s.Worker.PPID != loaderPID {
			t.Errorf("worker's parent %d, want the loader %d", s.Worker.PPID, loaderPID)
		}
		if s.Worker.User.Name != e.user || s.Loader.User.Name != "root" {
			t.Errorf("worker user %+v, loader user %+v; want %s and root", *s.Worker.User, *s.Loader.User, e.user)
		}
		if len(s.Worker.Capabilities.Effective)+len(s.Worker.Capabilities.Bounding) != 0 || !s.Worker.NoNewPrivs ||
			s.Worker.Seccomp.Mode != "filter" || s.Worker.ThreadsDiffer != "" {
			t.Errorf("worker not shown confined: %+v", *s.Worker)
		}
		// The loader's thread that started the worker waits in it with an
		// empty bounding set: it holds less than the rest, never more.
		if s.Loader.ThreadsDiffer != "" || len(s.Loader.ThreadsHoldingLess) != 1 ||
			!strings.Contains(s.Loader.ThreadsHoldingLess[0], "CapBnd 0000000000000000") {
			t.Errorf("loader threads: differ %q, holding less %q; want none differing and the spawning thread holding less",
				s.Loader.ThreadsDiffer, s.Loader.ThreadsHoldingLess)
		}

		// What each process holds.
		if s.Worker.BPF == nil || s.Loader.BPF == nil {
			t.Fatalf("root sees no BPF objects: worker %v loader %v", s.Worker.BPF, s.Loader.BPF)
		}
		var workerMaps []string
		for _, m := range s.Worker.BPF.Maps {
			workerMaps = append(workerMaps, m.Name)
			wantAccess := "read-write"
			if bpf.WorkerReadOnly[m.Name] {
				wantAccess = "read-only"
			}
			if m.Access != wantAccess || m.ID == 0 || m.MaxEntries == 0 {
				t.Errorf("worker holds map %+v; want %s, with an id and a capacity", m, wantAccess)
			}
		}
		slices.Sort(workerMaps)
		wantMaps := slices.Sorted(slices.Values(bpf.WorkerMaps))
		if !slices.Equal(workerMaps, wantMaps) || len(s.Worker.BPF.Programs)+len(s.Worker.BPF.Links) != 0 {
			t.Errorf("worker holds maps %v, %d programs, %d links; want %v and no program or link",
				workerMaps, len(s.Worker.BPF.Programs), len(s.Worker.BPF.Links), wantMaps)
		}
		// The links are pinned; the programs stay for the next interface,
		// the worker's maps for the next worker.
		if len(s.Loader.BPF.Programs) != 2 || len(s.Loader.BPF.Links) != 0 || len(s.Loader.BPF.Maps) != len(bpf.WorkerMaps) {
			t.Errorf("loader holds %d programs, %d links and %d maps, want 2, none and %d",
				len(s.Loader.BPF.Programs), len(s.Loader.BPF.Links), len(s.Loader.BPF.Maps), len(bpf.WorkerMaps))
		}

		// Pins, links and the policy in force.
		var pinNames []string
		for _, p := range s.Pins {
			pinNames = append(pinNames, p.Name)
			if p.Error != "" || p.ID == 0 {
				t.Errorf("pin %+v", p)
			}
		}
		wantPins := []string{fmt.Sprintf("link_%d_ingress", l.HostIfIndex), fmt.Sprintf("link_%d_egress", l.HostIfIndex)}
		for name := range (&bpf.DatapathMaps{}).All() {
			wantPins = append(wantPins, name)
		}
		for _, want := range wantPins {
			if !slices.Contains(pinNames, want) {
				t.Errorf("pins %v lack %s", pinNames, want)
			}
		}
		dirs := map[string]statusLink{}
		for _, lk := range s.Links {
			dirs[lk.Direction] = lk
		}
		for dir, prog := range map[string]string{"ingress": "pci_ingress", "egress": "pci_egress"} {
			lk, ok := dirs[dir]
			if !ok {
				t.Errorf("no %s link in %+v", dir, s.Links)
				continue
			}
			if lk.Ifindex != l.HostIfIndex || lk.Interface != l.HostIf || lk.Program.Name != prog ||
				lk.Position != 0 || len(lk.Ahead) != 0 {
				t.Errorf("%s link %+v; want %s (ifindex %d), program %s at the head, nothing ahead",
					dir, lk, l.HostIf, l.HostIfIndex, prog)
			}
		}
		if s.Policy == nil || s.Policy.Generation != 1 || s.Policy.Layout != bpf.LayoutVersion ||
			s.Policy.SetSHA256 != appliedHash(t, e) {
			t.Errorf("policy %+v; want generation 1, layout %d, the set hash of the audit log", s.Policy, bpf.LayoutVersion)
		}
		// Without --state-dir, status finds the running instance's from
		// its worker's command line, and the Landlock report there.
		out, err := exec.Command(binary, "status", "--pin-dir", e.pinDir, "-o", "json").Output()
		var own statusJSON
		if err == nil {
			err = json.Unmarshal(out, &own)
		}
		if err != nil || own.StateDir != e.stateDir || own.AuditDir != e.auditDir || own.Landlock == nil {
			t.Errorf("status without --state-dir: %v; state dir %q audit dir %q, want %q and %q, and a Landlock report",
				err, own.StateDir, own.AuditDir, e.stateDir, e.auditDir)
		}
		if s.Policy != nil && !slices.Equal(s.Policy.Governed, []string{"ingress", "egress"}) {
			t.Errorf("governed %q, want both directions, as labPolicy's policyTypes say", s.Policy.Governed)
		}
		if s.Counters == nil {
			t.Error("root sees no counters")
		}

		// The lab runs the worker under another account: an override.
		if !slices.ContainsFunc(s.Overrides, func(o statusOverride) bool {
			return o.Name == "PCI_SEGMENT_PRIVILEGE_USER" && o.Value == e.user && o.InEffect && o.Source == "loader environment"
		}) {
			t.Errorf("overrides %+v lack PCI_SEGMENT_PRIVILEGE_USER=%s", s.Overrides, e.user)
		}
		if !slices.ContainsFunc(s.Findings, func(f string) bool { return strings.Contains(f, "PCI_SEGMENT_PRIVILEGE_USER") }) {
			t.Errorf("findings %v do not name the override", s.Findings)
		}
		// Root reads everything, the worker's Landlock report included.
		for _, u := range s.Unavailable {
			t.Errorf("root could not read %s: %s", u.What, u.Reason)
		}
		if s.Landlock == nil {
			t.Error("status as root shows no Landlock state of the worker")
		}
	})

	t.Run("text for a reader", func(t *testing.T) {
		out, err := runStatus(t, e, 0, 0)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		text := string(out)
		for _, want := range []string{
			fmt.Sprintf("Loader  pid %d", loaderPID), fmt.Sprintf("Worker  pid %d, parent %d", workerPID, loaderPID),
			"CapEff", "CapBnd", "NoNewPrivs", "Seccomp", "filter", "MAC label",
			l.HostIf + " (ifindex", "pci_ingress", "pci_egress", "at the head",
			"generation", "PCI_SEGMENT_PRIVILEGE_USER=" + e.user,
		} {
			if !strings.Contains(strings.Join(strings.Fields(text), " "), strings.Join(strings.Fields(want), " ")) {
				t.Errorf("text lacks %q:\n%s", want, text)
			}
		}
	})

	t.Run("as a user without privileges", func(t *testing.T) {
		user, _ := lab.ServiceAccount(t)
		ids, err := userIDs(user)
		if err != nil {
			t.Fatal(err)
		}
		s := statusOf(t, e, ids[0], ids[1])
		if s.Viewer.Root || s.Viewer.UID != int(ids[0]) {
			t.Errorf("viewer %+v, want uid %d", s.Viewer, ids[0])
		}
		// /proc/PID/status is readable by anyone: the split still shows.
		checkAgainstProc(t, s.Loader, "loader", loaderPID)
		checkAgainstProc(t, s.Worker, "worker", workerPID)
		if s.Worker.BPF != nil || s.Loader.BPF != nil || s.Pins != nil || s.Links != nil || s.Policy != nil {
			t.Errorf("an unprivileged user read root's objects: bpf %v %v pins %v links %v policy %v",
				s.Worker.BPF, s.Loader.BPF, s.Pins, s.Links, s.Policy)
		}
		var what []string
		for _, u := range s.Unavailable {
			what = append(what, u.What)
			if !strings.Contains(u.Reason, "needs root") && !strings.Contains(u.What, "Landlock") {
				t.Errorf("unavailable %q: reason %q does not say it needs root", u.What, u.Reason)
			}
		}
		for _, want := range []string{"loader (pid", "worker (pid", "overrides", "pins", "network namespace"} {
			if !slices.ContainsFunc(what, func(w string) bool { return strings.Contains(w, want) }) {
				t.Errorf("unavailable %q does not mention %s", what, want)
			}
		}
	})
}

func TestStatusOfNoInstance(t *testing.T) {
	requireRoot(t)
	e := &enforcer{pinDir: "/sys/fs/bpf/pci-segment-e2e-none-" + randomHex(t, 6), stateDir: t.TempDir()}
	s := statusOf(t, e, 0, 0)
	if s.Loader != nil || s.Worker != nil || len(s.Links) != 0 || s.Policy != nil {
		t.Errorf("status of nothing shows loader %v worker %v links %v policy %v", s.Loader, s.Worker, s.Links, s.Policy)
	}
	if !slices.ContainsFunc(s.Findings, func(f string) bool { return strings.Contains(f, "nothing is pinned") }) {
		t.Errorf("findings %v do not say nothing is pinned", s.Findings)
	}
	if _, err := os.Stat(e.pinDir); err == nil {
		t.Errorf("status created %s", e.pinDir)
	}
}

// A program put ahead of ours on the real interface, as another tool or an
// attacker with CAP_NET_ADMIN would, is named in status: its position, its
// id and name, and a finding.
func TestStatusNamesAProgramAttachedAheadOfOurs(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})

	// It passes everything on (TCX_NEXT), so ours still runs.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "ahead_of_ours", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	var ahead link.Link
	err = l.Do(l.HostNS, func() (err error) {
		ahead, err = link.AttachTCX(link.TCXOptions{Interface: l.HostIfIndex, Program: prog,
			Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
		return err
	})
	if err != nil {
		t.Fatalf("attach a program ahead of ours: %v", err)
	}
	defer ahead.Close()

	s := statusOf(t, e, 0, 0)
	for _, lk := range s.Links {
		switch lk.Direction {
		case "ingress":
			if lk.Position != 1 || len(lk.Ahead) != 1 || lk.Ahead[0].ID != uint32(id) || lk.Ahead[0].Name != "ahead_of_ours" {
				t.Errorf("ingress link at position %d with %+v ahead; want position 1 behind program %d (ahead_of_ours)",
					lk.Position, lk.Ahead, id)
			}
		case "egress":
			if lk.Position != 0 || len(lk.Ahead) != 0 {
				t.Errorf("egress link at position %d with %+v ahead; want the head", lk.Position, lk.Ahead)
			}
		}
	}
	if !slices.ContainsFunc(s.Findings, func(f string) bool {
		return strings.Contains(f, fmt.Sprintf("program %d", id)) && strings.Contains(f, "runs before ours")
	}) {
		t.Errorf("findings %v do not name program %d", s.Findings, id)
	}
	text, err := runStatus(t, e, 0, 0)
	if err != nil || !strings.Contains(string(text), "ahead_of_ours") {
		t.Errorf("status text (%v) does not name the program ahead:\n%s", err, text)
	}
}

// A set that governs nothing on this host (its policies select other
// hosts) is in force and filters nothing: the worker's log, the metrics
// and status say so, in words an operator cannot miss.
func TestAHostNothingGovernsIsSaidToBeUnfiltered(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	other := strings.Replace(labPolicy, "pci-env: cde", "pci-env: other", 1)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"other.yaml": other}), enforceOpts{})
	e.waitLog(t, "nothing is filtered", 1)
	scrape := e.scrape(t)
	for _, d := range []string{"ingress", "egress"} {
		if got := metricValue(t, scrape, `pci_segment_governed{direction="`+d+`"}`); got != 0 {
			t.Errorf("pci_segment_governed %s = %v, want 0", d, got)
		}
	}
	s := statusOf(t, e, 0, 0)
	if s.Policy == nil || s.Policy.Governed == nil || len(s.Policy.Governed) != 0 {
		t.Errorf("status policy %+v, want governed []", s.Policy)
	}
	if !slices.ContainsFunc(s.Findings, func(f string) bool { return strings.Contains(f, "NOTHING IS FILTERED") }) {
		t.Errorf("findings %q do not say nothing is filtered", s.Findings)
	}
	out, err := runStatus(t, e, 0, 0)
	if err != nil || strings.Count(string(out), "NOT FILTERED: no policy in force governs it") != 2 {
		t.Errorf("status text (%v) does not say both directions are not filtered:\n%s", err, out)
	}
}
