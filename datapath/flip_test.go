package datapath

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/testenv"
)

// The two versions of the flip tests: v2 takes 10.5.0.0/16 out of v1's
// TCP 443 allowance and adds 192.0.2.0/24 on TCP 80.
const (
	flipV1 = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: egress-v1}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{protocol: TCP, port: 443}]
`
	flipV2 = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: egress-v2}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.5.0.0/16]}}]
      ports: [{protocol: TCP, port: 443}]
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]
      ports: [{protocol: TCP, port: 80}]
`
)

var flipHost = netip.MustParseAddr("198.51.100.7")

func egressTCP(dst string, sport, dport uint16) bpf.Packet {
	return bpf.Packet{Src: flipHost, Dst: netip.MustParseAddr(dst), Proto: tcp, Sport: sport, Dport: dport}
}

// activeHalf is the half the selector names now.
func activeHalf(t *testing.T, objs *bpf.DatapathObjects) uint8 {
	t.Helper()
	var sel bpf.DatapathSelectorValue
	if err := objs.Selector.Lookup(uint32(0), &sel); err != nil {
		t.Fatal(err)
	}
	return uint8(sel.Active & 1)
}

// inForce is the generation of the half the selector names now.
func inForce(t *testing.T, objs *bpf.DatapathObjects) uint64 {
	t.Helper()
	var hc bpf.DatapathHalfConfig
	if err := objs.Halves.Lookup(uint32(activeHalf(t, objs)), &hc); err != nil {
		t.Fatal(err)
	}
	return hc.Generation
}

// A prober runs the real egress program (connection tracking on) in a
// tight loop while the policy flips 100 times between v1 and v2. Odd
// generations are v1, even ones v2. Flows both versions allow or deny are
// decided the same in every sample; 10.5.1.1:443, which only v1 allows,
// follows the version in force exactly, for a new flow each time and for
// one long-lived flow that reuses its 5-tuple throughout.
func TestProberSeesEveryFlipWhole(t *testing.T) {
	objs := datapath(t, flipV1, "")
	set1, c1 := compileYAML(t, flipV1, "")
	set2, c2 := compileYAML(t, flipV2, "")
	pm := writerOf(objs)

	flipped := make(chan error, 1)
	go func() {
		for i := range 100 {
			set, c := set2, c2
			if i%2 == 1 {
				set, c = set1, c1
			}
			if err := pm.Apply(c, uint64(2+i), set.Hash); err != nil {
				flipped <- err
				return
			}
			time.Sleep(2 * time.Millisecond) // let the prober see each version
		}
		flipped <- nil
	}()

	verdict := func(p bpf.Packet) bool { return run(t, objs.PciEgress, p) == verdictNext }
	const longLivedPort = 45000
	samples := map[bool]int{} // by "v1 in force"
	sport := uint16(20000)
	for done := false; !done; {
		select {
		case err := <-flipped:
			if err != nil {
				t.Fatalf("flip: %v", err)
			}
			done = true
		default:
		}
		sport = 20000 + (sport-20000+1)%20000 // never longLivedPort
		before := inForce(t, objs)
		both := verdict(egressTCP("10.1.1.1", sport, 443))
		neither := verdict(egressTCP("192.0.2.1", sport, 22))
		fresh := verdict(egressTCP("10.5.1.1", sport, 443))
		long := verdict(egressTCP("10.5.1.1", longLivedPort, 443))
		after := inForce(t, objs)
		if !both || neither {
			t.Fatalf("generation %d..%d: 10.1.1.1:443 allowed=%v, 192.0.2.1:22 allowed=%v; want always true, false", before, after, both, neither)
		}
		if before != after {
			continue // a flip during the sample: either version may have decided
		}
		v1 := before%2 == 1
		if fresh != v1 || long != v1 {
			t.Fatalf("generation %d (v1=%v): 10.5.1.1:443 allowed %v for a new flow, %v for the long-lived one; want %v",
				before, v1, fresh, long, v1)
		}
		samples[v1]++
	}
	if gen := inForce(t, objs); gen != 101 {
		t.Errorf("generation %d in force after 100 flips, want 101", gen)
	}
	// Enough samples inside each version for the checks above to mean
	// something.
	if samples[true] < 50 || samples[false] < 50 {
		t.Errorf("samples within one generation: %d under v1, %d under v2; want at least 50 of each", samples[true], samples[false])
	}
}

// liveHalf is, byte for byte, what the datapath reads now: the selector,
// the settings of the half it names, that half's trie entries, and the
// info map.
func liveHalf(t *testing.T, objs *bpf.DatapathObjects) map[string][]string {
	t.Helper()
	active := activeHalf(t, objs)
	out := map[string][]string{}
	raw := func(name string, m *ebpf.Map, key uint32) {
		var v []byte
		if err := m.Lookup(key, &v); err != nil {
			t.Fatal(err)
		}
		out[name] = []string{hex.EncodeToString(v)}
	}
	raw("selector", objs.Selector, uint32(0))
	raw("halves", objs.Halves, uint32(active))
	raw("info", objs.Info, uint32(0))
	for name, m := range map[string]*ebpf.Map{"addr4": objs.Addr4, "addr6": objs.Addr6, "ports": objs.Ports} {
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			if k[4] == active { // every trie key: prefixlen (4 bytes), then the half
				out[name] = append(out[name], hex.EncodeToString(k)+"="+hex.EncodeToString(v))
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(out[name])
	}
	return out
}

// A v2 whose write fails half way, here because the port map is handed
// over read-only, so that its write fails after the prefixes went in: the
// live half, the selector and the info map are v1's byte for byte, and v1
// still decides.
func TestApplyFailingHalfWayLeavesTheLiveHalfAlone(t *testing.T) {
	objs := datapath(t, flipV1, "")
	set2, c2 := compileYAML(t, flipV2, "")
	before := liveHalf(t, objs)
	inactive := activeHalf(t, objs) ^ 1

	broken := writerOf(objs)
	ports, err := pins.ReadOnly(objs.Ports, "/sys/fs/bpf")
	if err != nil {
		t.Fatal(err)
	}
	defer ports.Close()
	broken.Ports = ports
	err = broken.Apply(c2, 2, set2.Hash)
	if err == nil || !strings.Contains(err.Error(), "write port allowances") {
		t.Fatalf("apply with an unwritable port map: %v, want a failure writing the port allowances", err)
	}
	// It did fail half way: v2's prefixes are in the inactive half.
	var k bpf.DatapathAddr4Key
	var v []byte
	written := 0
	for it := objs.Addr4.Iterate(); it.Next(&k, &v); {
		if k.Half == inactive {
			written++
		}
	}
	if written == 0 {
		t.Fatal("nothing was written to the inactive half: the failure was not half way")
	}
	if after := liveHalf(t, objs); !reflect.DeepEqual(before, after) {
		t.Errorf("the live half changed:\nbefore %v\nafter  %v", before, after)
	}
	checkVerdicts(t, objs, []verdictCase{
		{"v1 still allows 10.5.1.1:443", true, egressTCP("10.5.1.1", 30000, 443), true},
		{"v2's TCP 80 is not in force", true, egressTCP("192.0.2.1", 30000, 80), false},
	})

	// The next apply clears what the failed one left and goes live.
	if err := writerOf(objs).Apply(c2, 2, set2.Hash); err != nil {
		t.Fatal(err)
	}
	checkVerdicts(t, objs, []verdictCase{
		{"v2 denies 10.5.1.1:443", true, egressTCP("10.5.1.1", 30001, 443), false},
		{"v2 allows 192.0.2.1:80", true, egressTCP("192.0.2.1", 30001, 80), true},
	})
}

// In monitor mode the program passes what the policy denies, counts it as
// a would-be denial (not as a drop), reports it with the monitor flag, and
// creates no state for it: the next set written in enforce mode drops the
// same flow at once.
func TestMonitorModePassesCountsAndReports(t *testing.T) {
	objs := datapath(t, flipV1, "")
	set1, c1 := compileYAML(t, flipV1, "")
	pm := writerOf(objs)
	pm.Monitor = true
	if err := pm.Apply(c1, 2, set1.Hash); err != nil {
		t.Fatal(err)
	}
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	denied := egressTCP("192.0.2.1", 31000, 22)
	if got := run(t, objs.PciEgress, denied); got != verdictNext {
		t.Fatalf("monitor mode returned %#x for a denied packet, want TCX_NEXT", got)
	}
	if got := run(t, objs.PciEgress, egressTCP("10.1.1.1", 31000, 443)); got != verdictNext {
		t.Fatalf("an allowed packet: %#x", got)
	}
	sum := func(slot uint32) uint64 {
		var per []bpf.DatapathCounter
		if err := objs.Counters.Lookup(slot, &per); err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range per {
			n += c.Packets
		}
		return n
	}
	if got := sum(bpf.CounterMonitor(bpf.DirEgress)); got != 1 {
		t.Errorf("would-deny counter %d, want 1", got)
	}
	if got := sum(bpf.CounterVerdict(bpf.DirEgress, true)); got != 0 {
		t.Errorf("deny counter %d, want 0: nothing was dropped", got)
	}
	rd.SetDeadline(time.Now().Add(time.Second))
	rec, err := rd.Read()
	if err != nil {
		t.Fatalf("no event for the would-be denial: %v", err)
	}
	var ev bpf.DatapathEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Monitor != 1 || ev.Reason != 1 {
		t.Errorf("event %+v, want the monitor flag and reason no_rule", ev)
	}

	pm.Monitor = false
	if err := pm.Apply(c1, 3, set1.Hash); err != nil {
		t.Fatal(err)
	}
	if got := run(t, objs.PciEgress, denied); got != verdictDrop {
		t.Errorf("enforce mode after monitor: %#x for the same flow, want TCX_DROP", got)
	}
}

// A flood the ring buffer cannot hold: with the buffer shrunk and nobody
// reading, 10,000 denied packets are each dropped, and the events in the
// ring plus the losses counted per CPU are exactly 10,000.
func TestEveryDeniedPacketIsRecordedOrCountedLost(t *testing.T) {
	testenv.RequireRoot(t)
	spec, err := bpf.SpecWithSizes(bpf.DefaultSizes)
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps[bpf.DatapathMapEvents].MaxEntries = 4096 // a page: a few dozen events
	var objs bpf.DatapathObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	set1, c1 := compileYAML(t, flipV1, "")
	if err := writerOf(&objs).Apply(c1, 1, set1.Hash); err != nil {
		t.Fatal(err)
	}
	const sent = 10000
	for i := range sent {
		if got := run(t, objs.PciEgress, egressTCP("192.0.2.1", uint16(1024+i%60000), 22)); got != verdictDrop {
			t.Fatalf("packet %d: %#x, want dropped whatever the ring holds", i, got)
		}
	}
	var per []bpf.DatapathCounter
	if err := objs.Counters.Lookup(uint32(bpf.CounterEventsLost), &per); err != nil {
		t.Fatal(err)
	}
	var lost uint64
	for _, c := range per {
		lost += c.Packets
	}
	rd, err := ringbuf.NewReader(objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	events := 0
	for {
		rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := rd.Read(); err != nil {
			break
		}
		events++
	}
	if lost == 0 || events == 0 || uint64(events)+lost != sent {
		t.Errorf("%d events in the ring and %d counted lost, want them to add up to %d (with some of each)", events, lost, sent)
	}
}
