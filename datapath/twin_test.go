package datapath

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// parseSet reads YAML documents into a set, sorted as Load sorts it.
func parseSet(t testing.TB, yaml string) *policy.Set {
	t.Helper()
	pols, err := policy.Parse("policy.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("%v\n%s", err, yaml)
	}
	slices.SortStableFunc(pols, func(a, b *policy.Policy) int { return strings.Compare(a.Key(), b.Key()) })
	return &policy.Set{Policies: pols}
}

// loadApplied loads the datapath and makes set, as seen by a host with
// labels, its policy.
func loadApplied(t testing.TB, set *policy.Set, labels map[string]string) *bpf.DatapathObjects {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	apply(t, objs, set, labels, 1)
	return objs
}

func apply(t testing.TB, objs *bpf.DatapathObjects, set *policy.Set, labels map[string]string, gen uint64) {
	t.Helper()
	c, err := policy.Compile(set, labels)
	if err != nil {
		t.Fatal(err)
	}
	if err := writerOf(objs).Apply(c, gen, set.Hash); err != nil {
		t.Fatal(err)
	}
}

func loadTwinOf(t testing.TB, objs *bpf.DatapathObjects) *bpf.Twin {
	t.Helper()
	twin, err := bpf.LoadTwin(&objs.DatapathMaps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { twin.Close() })
	return twin
}

const twinPolicy = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: twin}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{protocol: TCP, port: 443}, {protocol: UDP, port: 53}]
  egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}, {ipBlock: {cidr: 2001:db8:5::/48}}]
`

var (
	twinHost4 = netip.MustParseAddr("192.0.2.1")
	twinHost6 = netip.MustParseAddr("2001:db8::1")
)

type twinCase struct {
	name  string
	dir   policy.Direction
	p     bpf.Packet
	allow bool
}

func twinCases() []twinCase {
	a := netip.MustParseAddr
	return []twinCase{
		{"TCP 443 in", policy.Ingress, bpf.Packet{Src: a("10.1.2.3"), Dst: twinHost4, Proto: 6, Sport: 40000, Dport: 443}, true},
		{"TCP 443 in, first fragment", policy.Ingress, bpf.Packet{Src: a("10.1.2.3"), Dst: twinHost4, Proto: 6, Sport: 40000, Dport: 443, Frag: bpf.FirstFrag, FragID: 7}, true},
		{"UDP 53 in", policy.Ingress, bpf.Packet{Src: a("10.1.2.3"), Dst: twinHost4, Proto: 17, Sport: 40000, Dport: 53}, true},
		{"TCP 22 in", policy.Ingress, bpf.Packet{Src: a("10.1.2.3"), Dst: twinHost4, Proto: 6, Sport: 40000, Dport: 22}, false},
		{"TCP 443 in from outside", policy.Ingress, bpf.Packet{Src: a("11.1.2.3"), Dst: twinHost4, Proto: 6, Sport: 40000, Dport: 443}, false},
		{"UDP out", policy.Egress, bpf.Packet{Src: twinHost4, Dst: a("192.0.2.77"), Proto: 17, Sport: 40001, Dport: 9999}, true},
		{"UDP out, first fragment", policy.Egress, bpf.Packet{Src: twinHost4, Dst: a("192.0.2.77"), Proto: 17, Sport: 40001, Dport: 9999, Frag: bpf.FirstFrag, FragID: 8}, true},
		{"ICMPv6 out", policy.Egress, bpf.Packet{Src: twinHost6, Dst: a("2001:db8:5::9"), Proto: 58, ICMPType: 128}, true},
		{"TCP out elsewhere", policy.Egress, bpf.Packet{Src: twinHost4, Dst: a("198.51.100.1"), Proto: 6, Sport: 40001, Dport: 443}, false},
	}
}

func checkTwin(t *testing.T, twin *bpf.Twin, cases []twinCase) {
	t.Helper()
	for _, tc := range cases {
		got, err := twin.Verdict(tc.dir == policy.Egress, tc.p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.allow {
			t.Errorf("%s: twin says allow=%v, want %v", tc.name, got, tc.allow)
		}
	}
}

func TestTwinJudgesLikeTheDatapath(t *testing.T) {
	objs := loadApplied(t, parseSet(t, twinPolicy), nil)
	twin := loadTwinOf(t, objs)
	cases := twinCases()
	checkTwin(t, twin, cases)
	// The datapath itself, on the same new packets, says the same.
	for _, tc := range cases {
		prog := objs.PciIngress
		if tc.dir == policy.Egress {
			prog = objs.PciEgress
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: tc.p.Frame()})
		if err != nil {
			t.Fatal(err)
		}
		if (ret == bpf.RetNext) != tc.allow {
			t.Errorf("%s: datapath returned %#x, twin agreed with allow=%v", tc.name, ret, tc.allow)
		}
	}
}

func TestTwinFollowsTheFlip(t *testing.T) {
	objs := loadApplied(t, parseSet(t, twinPolicy), nil)
	twin := loadTwinOf(t, objs)
	p := bpf.Packet{Src: netip.MustParseAddr("10.1.2.3"), Dst: twinHost4, Proto: 6, Sport: 40000, Dport: 22}
	if allow, err := twin.Verdict(false, p); err != nil || allow {
		t.Fatalf("before: allow=%v err=%v", allow, err)
	}
	apply(t, objs, parseSet(t, strings.Replace(twinPolicy, "port: 443", "port: 22", 1)), nil, 2)
	if allow, err := twin.Verdict(false, p); err != nil || !allow {
		t.Fatalf("after the flip: allow=%v err=%v; the twin does not read the live maps", allow, err)
	}
}

// TestTwinLeavesNoState runs packets that the datapath would remember
// (allowed flows, first fragments) and ones it would count and report
// (drops) through the twin, then checks the live state maps.
func TestTwinLeavesNoState(t *testing.T) {
	objs := loadApplied(t, parseSet(t, twinPolicy), nil)
	twin := loadTwinOf(t, objs)
	for range 500 {
		checkTwin(t, twin, twinCases())
	}
	// Later fragments too: the twin drops them, since it never records a
	// first fragment.
	later := bpf.Packet{Src: netip.MustParseAddr("10.1.2.3"), Dst: twinHost4, Proto: 6, Frag: bpf.LaterFrag, FragID: 7}
	if allow, err := twin.Verdict(false, later); err != nil || allow {
		t.Errorf("later fragment: allow=%v err=%v, want a drop", allow, err)
	}

	assertNoState(t, objs)

	// The check is not vacuous: the datapath itself leaves all of it.
	for _, tc := range twinCases() {
		prog := objs.PciIngress
		if tc.dir == policy.Egress {
			prog = objs.PciEgress
		}
		if _, err := prog.Run(&ebpf.RunOptions{Data: tc.p.Frame()}); err != nil {
			t.Fatal(err)
		}
	}
	if n := countEntries(t, objs.Conntrack); n == 0 {
		t.Error("datapath left no conntrack entry: the state check above proves nothing")
	}
	if n := countEntries(t, objs.Frags); n == 0 {
		t.Error("datapath left no fragment entry: the state check above proves nothing")
	}
	if countersSum(t, objs.Counters) == 0 {
		t.Error("datapath counted nothing: the state check above proves nothing")
	}
	if !eventPending(t, objs.Events) {
		t.Error("datapath reported no drop event: the state check above proves nothing")
	}
}

func assertNoState(t *testing.T, objs *bpf.DatapathObjects) {
	t.Helper()
	if n := countEntries(t, objs.Conntrack); n != 0 {
		t.Errorf("conntrack holds %d entries after twin runs", n)
	}
	if n := countEntries(t, objs.Frags); n != 0 {
		t.Errorf("frags holds %d entries after twin runs", n)
	}
	if n := countersSum(t, objs.Counters); n != 0 {
		t.Errorf("counters sum to %d after twin runs", n)
	}
	if eventPending(t, objs.Events) {
		t.Error("an event is waiting in the ring buffer after twin runs")
	}
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	var (
		n        int
		key, val []byte
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func countersSum(t *testing.T, m *ebpf.Map) uint64 {
	t.Helper()
	var sum uint64
	for slot := range m.MaxEntries() {
		var per []bpf.DatapathCounter
		if err := m.Lookup(slot, &per); err != nil {
			t.Fatal(err)
		}
		for _, c := range per {
			sum += c.Packets + c.Bytes
		}
	}
	return sum
}

func eventPending(t *testing.T, m *ebpf.Map) bool {
	t.Helper()
	rd, err := ringbuf.NewReader(m)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now())
	_, err = rd.Read()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// pinMaps pins the maps of objs named in names under a fresh directory in
// /sys/fs/bpf, laid out as the loader does, and removes it after the test.
func pinMaps(t *testing.T, objs *bpf.DatapathObjects, names []string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/sys/fs/bpf", "pci-segment-test-")
	if err != nil {
		testenv.Unavailable(t, "no bpffs at /sys/fs/bpf: "+err.Error())
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	if err := os.Mkdir(filepath.Join(dir, bpf.Layout), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		m := mapByName(t, objs, name)
		if err := m.Pin(filepath.Join(dir, bpf.Layout, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func mapByName(t *testing.T, objs *bpf.DatapathObjects, name string) *ebpf.Map {
	t.Helper()
	m, err := objs.ByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLoadTwinPinned(t *testing.T) {
	var all []string
	for name := range (&bpf.DatapathMaps{}).All() {
		all = append(all, name)
	}
	for _, tc := range []struct {
		name   string
		pinned []string
	}{
		{"every map pinned, as the loader does", all},
		{"the maps the worker gets", bpf.WorkerMaps},
		{"only the policy maps", bpf.TwinPolicyMaps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := loadApplied(t, parseSet(t, twinPolicy), nil)
			dir := pinMaps(t, objs, tc.pinned)
			twin, err := bpf.LoadTwinPinned(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer twin.Close()
			for range 50 {
				checkTwin(t, twin, twinCases())
			}
			assertNoState(t, objs)
		})
	}
}

func TestLoadTwinPinnedSaysWhatIsMissing(t *testing.T) {
	testenv.RequireRoot(t)
	objs := loadApplied(t, parseSet(t, twinPolicy), nil)
	dir := pinMaps(t, objs, []string{bpf.DatapathMapAddr4, bpf.DatapathMapAddr6, bpf.DatapathMapPorts, bpf.DatapathMapSelector})
	for _, tc := range []struct {
		dir, want string
	}{
		{filepath.Join(dir, "absent"), "no pinned datapath in"},
		{dir, "no pinned map halves"},
	} {
		_, err := bpf.LoadTwinPinned(tc.dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadTwinPinned(%s) = %v, want an error containing %q", tc.dir, err, tc.want)
		}
	}
}

func TestLoadTwinRefusesAMapOfAnotherName(t *testing.T) {
	objs := loadApplied(t, parseSet(t, twinPolicy), nil)
	maps := objs.DatapathMaps
	maps.Addr4 = objs.Addr6
	if _, err := bpf.LoadTwin(&maps); err == nil {
		t.Error("LoadTwin took addr6 for addr4")
	}
	maps = objs.DatapathMaps
	maps.Halves = nil
	if _, err := bpf.LoadTwin(&maps); err == nil || !strings.Contains(err.Error(), "halves") {
		t.Errorf("LoadTwin without halves: %v", err)
	}
}

// TestTwinNoticesAnotherRunningProgram attaches the datapath, and then a
// program of other code, to a lab interface, and asks the twin whether the
// pinned links run this binary's programs.
func TestTwinNoticesAnotherRunningProgram(t *testing.T) {
	objs := loadApplied(t, parseSet(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: any}
spec:
  podSelector: {}
  ingress: [{}]
`), nil)
	dir := pinMaps(t, objs, bpf.WorkerMaps)
	l := lab.New(t)
	other, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, -1, asm.DWord), asm.Return()},
		License:      "Dual BSD/GPL",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	attachPinned := func(prog *ebpf.Program, typ ebpf.AttachType, name string) {
		err := l.Do(l.HostNS, func() error {
			ln, err := link.AttachTCX(link.TCXOptions{Interface: l.HostIfIndex, Program: prog, Attach: typ})
			if err != nil {
				return err
			}
			defer ln.Close()
			return ln.Pin(filepath.Join(dir, bpf.Layout, name))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	attachPinned(objs.PciIngress, ebpf.AttachTCXIngress, "link_1_ingress")
	attachPinned(objs.PciEgress, ebpf.AttachTCXEgress, "link_1_egress")

	twin := loadTwinOf(t, objs)
	diffs, err := twin.RunningDiffers(dir)
	if err != nil || len(diffs) != 0 {
		t.Fatalf("the datapath itself: %q, %v; want no difference", diffs, err)
	}
	attachPinned(other, ebpf.AttachTCXEgress, "link_2_egress")
	diffs, err = twin.RunningDiffers(dir)
	if err != nil || len(diffs) != 1 || !strings.HasPrefix(diffs[0], "link_2_egress runs program tag") {
		t.Fatalf("another program attached: %q, %v; want it named", diffs, err)
	}
}
