package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/confine"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/testenv"
)

// fakeProc writes a /proc entry: comm, NUL-separated cmdline, and a status
// with just the PPid line discovery reads.
func fakeProc(t *testing.T, root string, pid, ppid int, comm string, args ...string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"comm":    comm + "\n",
		"cmdline": strings.Join(args, "\x00") + "\x00",
		"status":  fmt.Sprintf("Name:\t%s\nPPid:\t%d\nUid:\t0\t0\t0\t0\n", comm, ppid),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindInstanceByPinDirectory(t *testing.T) {
	root := t.TempDir()
	const pin = "/sys/fs/bpf/lab"
	fakeProc(t, root, 100, 1, "pci-segment", "/usr/bin/pci-segment", "--log-level", "debug", "enforce", "-f", "/etc/p", "--pin-dir", pin)
	fakeProc(t, root, 101, 100, "pci-segment", "pci-segment", "worker", "--state-dir", "/var/lib/x", "-f", "/etc/p")
	fakeProc(t, root, 102, 100, "sleep", "sleep", "1") // another child
	// Another instance, the default pin directory.
	fakeProc(t, root, 200, 1, "pci-segment", "pci-segment", "enforce", "-f", "/etc/q")
	fakeProc(t, root, 201, 200, "pci-segment", "pci-segment", "worker")
	// A policy file called enforce is not the command.
	fakeProc(t, root, 300, 1, "pci-segment", "pci-segment", "validate", "-f", "enforce", "--pin-dir", pin)
	// status itself.
	fakeProc(t, root, 400, 1, "pci-segment", "pci-segment", "status", "--pin-dir", pin)
	// Something else named like the pin directory.
	fakeProc(t, root, 500, 1, "bash", "bash", "enforce", "--pin-dir", pin)
	if err := os.Mkdir(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	inst, err := findInstance(root, pin+"/", 400)
	if err != nil {
		t.Fatal(err)
	}
	if inst.loader != 100 || inst.worker != 101 || len(inst.others) != 0 || inst.procs[101].ppid != 100 {
		t.Errorf("instance of %s: loader %d worker %d others %v", pin, inst.loader, inst.worker, inst.others)
	}
	inst, err = findInstance(root, "/sys/fs/bpf/pci-segment", 400)
	if err != nil {
		t.Fatal(err)
	}
	if inst.loader != 200 || inst.worker != 201 {
		t.Errorf("default instance: loader %d worker %d", inst.loader, inst.worker)
	}
	inst, _ = findInstance(root, "/sys/fs/bpf/none", 400)
	if inst.loader != 0 || inst.worker != 0 {
		t.Errorf("no instance: loader %d worker %d", inst.loader, inst.worker)
	}

	fakeProc(t, root, 150, 1, "pci-segment", "pci-segment", "enforce", "--pin-dir="+pin)
	inst, _ = findInstance(root, pin, 400)
	if inst.loader != 100 || !slices.Equal(inst.others, []int{150}) {
		t.Errorf("two loaders: loader %d others %v", inst.loader, inst.others)
	}
	// A user's process dressed as a loader, with a worker of its own, is
	// neither: the loader runs as root.
	fakeProc(t, root, 90, 1, "pci-segment", "pci-segment", "enforce", "--pin-dir", pin)
	fakeProc(t, root, 91, 90, "pci-segment", "pci-segment", "worker", "--state-dir", "/tmp/forged")
	for _, pid := range []int{90, 91} {
		os.WriteFile(filepath.Join(root, fmt.Sprint(pid), "status"), []byte(fmt.Sprintf("Name:\tpci-segment\nPPid:\t%d\nUid:\t1000\t1000\t1000\t1000\n", map[int]int{90: 1, 91: 90}[pid])), 0o644)
	}
	inst, _ = findInstance(root, pin, 400)
	if inst.loader != 100 || inst.worker != 101 || !slices.Equal(inst.posers, []int{90}) {
		t.Errorf("with a user's impostor: loader %d worker %d posers %v", inst.loader, inst.worker, inst.posers)
	}
	if _, err := findInstance(filepath.Join(root, "missing"), pin, 1); err == nil {
		t.Error("no error for an unreadable process list")
	}
}

func TestSubcommand(t *testing.T) {
	for want, args := range map[string][]string{
		"enforce":  {"pci-segment", "enforce", "-f", "x"},
		"worker":   {"pci-segment", "--log-level", "debug", "worker"},
		"status":   {"pci-segment", "--log-level=info", "status"},
		"":         {"pci-segment"},
		"validate": {"pci-segment", "validate", "enforce"},
	} {
		if got := subcommand(args); got != want {
			t.Errorf("subcommand(%q) = %q, want %q", args, got, want)
		}
	}
}

// fdinfo as Linux 6.18 prints it.
const (
	mapFDInfo = "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1038\nmap_type:\t6\nkey_size:\t4\nvalue_size:\t16\n" +
		"max_entries:\t16\nmap_flags:\t0x0\nmap_extra:\t0x0\nmemlock:\t952\nmap_id:\t16394\nfrozen:\t0\n"
	progFDInfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\nprog_type:\t3\nprog_jited:\t1\n" +
		"prog_tag:\tfd5fa822dccab22e\nmemlock:\t24576\nprog_id:\t3397\nrun_time_ns:\t0\nrun_cnt:\t0\n" +
		"recursion_misses:\t0\nverified_insns:\t12778\n"
	linkFDInfo = "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1038\nlink_type:\ttcx\nlink_id:\t587\n" +
		"prog_tag:\tdfc8efacfe393aca\nprog_id:\t3398\nifindex:\t3\nattach_type:\t46 (ingress)\n"
)

func TestParseFDInfo(t *testing.T) {
	for _, tc := range []struct {
		kind, text string
		want       BPFObject
	}{
		{"map", mapFDInfo, BPFObject{FD: 7, Kind: "map", ID: 16394, Type: "PerCPUArray", Access: "read-only",
			MaxEntries: 16, KeySize: 4, ValueSize: 16}},
		{"map", strings.Replace(strings.Replace(mapFDInfo, "02000000", "02000002", 1), "frozen:\t0", "frozen:\t1", 1),
			BPFObject{FD: 7, Kind: "map", ID: 16394, Type: "PerCPUArray", Access: "read-write",
				MaxEntries: 16, KeySize: 4, ValueSize: 16, Frozen: true}},
		{"program", progFDInfo, BPFObject{FD: 7, Kind: "program", ID: 3397, Type: "SchedCLS", Tag: "fd5fa822dccab22e"}},
		{"link", linkFDInfo, BPFObject{FD: 7, Kind: "link", ID: 587, Type: "tcx", ProgramID: 3398, Ifindex: 3,
			AttachType: "tcx_ingress"}},
	} {
		if got := parseFDInfo(7, tc.kind, tc.text); got != tc.want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.kind, got, tc.want)
		}
	}
}

func withProcRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
	return root
}

func TestOverridesFromTheLoadersEnvironment(t *testing.T) {
	root := withProcRoot(t)
	fakeProc(t, root, 10, 1, "pci-segment", "pci-segment", "enforce")
	env := strings.Join([]string{
		"PATH=/usr/bin", "PCI_SEGMENT_PRIVILEGE_USER=dev", "PCI_SEGMENT_DISABLE_SECCOMP=no",
		"PCI_SEGMENT_SKIP_PRIVILEGE_DROP=off", "PCI_SEGMENT_SKIP_MAC_VERIFY=1", "PCI_SEGMENT_PRIVILEGE_GROUP=",
		"PCI_SEGMENT_E2E=1",
	}, "\x00") + "\x00"
	if err := os.WriteFile(filepath.Join(root, "10", "environ"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gatherer{s: &Status{}}
	got := g.overrides(10, []string{"pci-segment", "enforce", "--allow-root"})
	want := []Override{
		{Name: "--allow-root", InEffect: true, Source: "loader command line"},
		{Name: "PCI_SEGMENT_SKIP_PRIVILEGE_DROP", Value: "off", Invalid: true, Source: "loader environment"},
		{Name: "PCI_SEGMENT_PRIVILEGE_USER", Value: "dev", InEffect: true, Source: "loader environment"},
		{Name: "PCI_SEGMENT_DISABLE_SECCOMP", Value: "no", Source: "loader environment"},
		{Name: "PCI_SEGMENT_SKIP_MAC_VERIFY", Value: "1", InEffect: true, Source: "loader environment"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("overrides:\n got %+v\nwant %+v", got, want)
	}

	// An unreadable environment is unknown, not "none".
	g = &gatherer{s: &Status{}}
	if got := g.overrides(11, []string{"pci-segment", "enforce"}); got != nil || len(g.s.Unavailable) != 1 {
		t.Errorf("unreadable environment: overrides %v, unavailable %v", got, g.s.Unavailable)
	}
}

func TestMACLabel(t *testing.T) {
	root := withProcRoot(t)
	for pid, body := range map[int]string{1: "unconfined\n", 2: "system_u:system_r:pcisegment_t:s0\x00", 3: ""} {
		dir := filepath.Join(root, fmt.Sprint(pid), "attr")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "current"), []byte(body), 0o644)
	}
	for pid, want := range map[int]string{1: "unconfined", 2: "system_u:system_r:pcisegment_t:s0", 3: "none", 4: "none"} {
		if got, err := macLabel(pid); got != want || err != nil {
			t.Errorf("pid %d: %q, %v; want %q", pid, got, err, want)
		}
	}
	// The kernel answers EINVAL when no module provides labels; the
	// cleanup of withProcRoot puts procRoot back.
	procRoot = "/proc"
	if got, err := macLabel(os.Getpid()); err != nil || got == "" {
		t.Errorf("own label: %q, %v", got, err)
	}
}

func TestMaskIsHexInJSON(t *testing.T) {
	b, err := json.Marshal(CapMasks{Effective: 0x1fffeffffff})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"effective":"000001fffeffffff"`) || !strings.Contains(string(b), `"ambient":"0000000000000000"`) {
		t.Errorf("masks: %s", b)
	}
	var back CapMasks
	if err := json.Unmarshal(b, &back); err != nil || back.Effective != 0x1fffeffffff {
		t.Errorf("read back %+v, %v", back, err)
	}
}

// confinedWorker is a worker as it should be.
func confinedWorker() *Process {
	return &Process{Role: "worker", PID: 20, PPID: 10, Privileges: &Privileges{
		User: Account{ID: 998, Name: "pci-segment"}, UIDs: IDs{998, 998, 998, 998}, GIDs: IDs{998, 998, 998, 998},
		NoNewPrivs: true, Seccomp: Seccomp{Mode: "filter", Filters: 1}, Threads: 8,
		Capabilities: CapSets{Effective: []string{}, Permitted: []string{}, Inheritable: []string{}, Bounding: []string{}, Ambient: []string{}},
	}}
}

func TestFindingsNameWhatIsWrong(t *testing.T) {
	report := &confine.Report{PID: 20, ABI: 7, Enforced: true, Filesystem: true, Network: true}
	for _, tc := range []struct {
		name   string
		change func(s *Status)
		want   string // "" for no finding
	}{
		{"a confined worker", func(s *Status) {}, ""},
		{"a capability left", func(s *Status) { s.Worker.CapMasks.Bounding = 1 << 21 }, "holds capabilities"},
		{"uid 0", func(s *Status) { s.Worker.UIDs.Effective = 0 }, "runs as uid 0"},
		{"no NoNewPrivs", func(s *Status) { s.Worker.NoNewPrivs = false }, "without NoNewPrivs"},
		{"no seccomp", func(s *Status) { s.Worker.Seccomp.Mode = "disabled" }, "without a seccomp filter"},
		{"threads differ", func(s *Status) { s.Worker.ThreadsDiffer = "thread 21 ..." }, "threads that differ"},
		{"override", func(s *Status) {
			s.Overrides = []Override{{Name: "PCI_SEGMENT_DISABLE_SECCOMP", Value: "1", InEffect: true}}
		}, "override in effect: PCI_SEGMENT_DISABLE_SECCOMP"},
		{"stale Landlock report", func(s *Status) { s.Landlock.Current = false }, "not the running worker"},
		{"no Landlock", func(s *Status) {
			s.Landlock.Report = &confine.Report{PID: 20, NotRestricted: []string{"everything"}}
		}, "without Landlock"},
		{"a program ahead", func(s *Status) {
			s.Links[0].Ahead = []Prog{{ID: 9, Name: "other", Type: "SchedCLS"}}
		}, "program 9 (SchedCLS other) runs before ours on eth0 (ifindex 2) ingress"},
		{"one direction", func(s *Status) { s.Links = s.Links[:1] }, "only a ingress link"},
		{"no loader", func(s *Status) { s.Loader = nil }, "no loader runs"},
		{"no worker", func(s *Status) { s.Worker = nil }, "without a worker"},
	} {
		s := &Status{
			Loader: &Process{Role: "loader", PID: 10}, Worker: confinedWorker(),
			Landlock: &Landlock{Current: true, Report: report},
			Links: []Link{
				{Ifindex: 2, Interface: "eth0", Direction: "ingress", Ahead: []Prog{}},
				{Ifindex: 2, Interface: "eth0", Direction: "egress", Ahead: []Prog{}},
			},
			Findings: []string{},
		}
		tc.change(s)
		(&gatherer{s: s}).judge()
		switch {
		case tc.want == "" && len(s.Findings) != 0:
			t.Errorf("%s: findings %q, want none", tc.name, s.Findings)
		case tc.want != "" && !slices.ContainsFunc(s.Findings, func(f string) bool { return strings.Contains(f, tc.want) }):
			t.Errorf("%s: findings %q lack %q", tc.name, s.Findings, tc.want)
		}
	}
}

func TestTextSaysUnknownAndNone(t *testing.T) {
	s := &Status{
		PinDir: "/sys/fs/bpf/x/v1", Worker: confinedWorker(),
		Overrides: []Override{}, Findings: []string{},
		Unavailable: []Unavailable{{What: "pins (/sys/fs/bpf/x/v1)", Reason: "permission denied: needs root"}},
	}
	s.Worker.MACLabel = "none"
	var b bytes.Buffer
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{
		"Loader  not running", "Worker  pid 20, parent 10", "pci-segment(998)", "CapEff", "0000000000000000  none",
		"NoNewPrivs  1", "Seccomp  filter, 1 filters", "threads  8, all alike",
		"Landlock  unknown (no report; see Not available)",
		"Development overrides\n  none", "Links\n  unknown (see Not available)", "Pins\n  unknown (see Not available)",
		"Policy in force\n  unknown", "Not available\n  - pins (/sys/fs/bpf/x/v1): permission denied: needs root",
	} {
		if !strings.Contains(squeeze(text), squeeze(want)) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}

func TestTextNamesThreadsHoldingLess(t *testing.T) {
	s := &Status{PinDir: "/sys/fs/bpf/x/v1", Loader: confinedWorker(), Overrides: []Override{}, Findings: []string{}}
	s.Loader.ThreadsHoldingLess = []string{"thread 21: CapBnd 0000000000000000, leader 0000000000000400"}
	var b bytes.Buffer
	if err := s.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"threads  8, 7 alike, 1 holding less than the leader (never more)\n",
		"  thread 21: CapBnd 0000000000000000, leader 0000000000000400\n",
	} {
		if !strings.Contains(squeeze(b.String()), squeeze(want)) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

// squeeze turns runs of spaces into one, so that column widths do not
// matter.
func squeeze(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == ' ' {
			if !space {
				b.WriteRune(r)
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

func TestHeldBPFOfThisProcess(t *testing.T) {
	testenv.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "status_test", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	pin := filepath.Join("/sys/fs/bpf", fmt.Sprintf("pci-segment-status-test-%d", os.Getpid()))
	if err := m.Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(pin)
	ro, err := ebpf.LoadPinnedMap(pin, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()

	held, err := heldBPF(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for fd, access := range map[int]string{m.FD(): "read-write", ro.FD(): "read-only"} {
		i := slices.IndexFunc(held.Maps, func(o BPFObject) bool { return o.FD == fd })
		if i < 0 {
			t.Errorf("fd %d not among %+v", fd, held.Maps)
			continue
		}
		want := BPFObject{FD: fd, Kind: "map", ID: uint32(id), Name: "status_test", Type: "Hash", Access: access,
			MaxEntries: 7, KeySize: 4, ValueSize: 8}
		if held.Maps[i] != want {
			t.Errorf("fd %d:\n got %+v\nwant %+v", fd, held.Maps[i], want)
		}
	}
}

func TestInNetnsLooksInsideAndComesBack(t *testing.T) {
	l := lab.New(t)
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var name string
	err = inNetns(l.HostNSPath, func() error {
		iface, err := net.InterfaceByIndex(l.HostIfIndex)
		if err == nil {
			name = iface.Name
		}
		return err
	})
	if err != nil || name != l.HostIf {
		t.Fatalf("inside %s: interface %d is %q, %v; want %s", l.HostNS, l.HostIfIndex, name, err, l.HostIf)
	}
	// Every thread is back: try from many goroutines.
	for range 20 {
		after, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil || after != before {
			t.Fatalf("namespace after inNetns: %s, %v; want %s", after, err, before)
		}
		runtime.Gosched()
	}
	if err := inNetns(filepath.Join(t.TempDir(), "none"), func() error { return nil }); err == nil {
		t.Error("no error for a missing namespace")
	}
}
