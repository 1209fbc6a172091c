package datapath

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// Verdicts as the program returns them (BPF_PROG_TEST_RUN reports a u32).
const (
	verdictNext = 0xffffffff // TCX_NEXT (-1)
	verdictDrop = 2          // TCX_DROP
)

// datapath loads the real programs with the policy compiled for labels.
// They keep state (connection tracking, fragments) from one run to the
// next, as on an interface.
func datapath(t *testing.T, yaml, labels string) *bpf.DatapathObjects {
	t.Helper()
	testenv.RequireRoot(t)
	set, c := compileYAML(t, yaml, labels)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	if err := writerOf(objs).Apply(c, 1, set.Hash); err != nil {
		t.Fatal(err)
	}
	return objs
}

// compileYAML loads one policy file and compiles it for labels.
func compileYAML(t *testing.T, yaml, labels string) (*policy.Set, *policy.Compiled) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	lbl, err := policy.ParseLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(set, lbl)
	if err != nil {
		t.Fatal(err)
	}
	return set, c
}

func writerOf(objs *bpf.DatapathObjects) *PolicyMaps { return Writer(objs.All()) }

func run(t *testing.T, prog *ebpf.Program, p bpf.Packet) uint32 {
	t.Helper()
	return runFrame(t, prog, p.Frame())
}

func runFrame(t *testing.T, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	return ret
}

var (
	tcp = uint8(6)
	udp = uint8(17)
)

type verdictCase struct {
	name   string
	egress bool
	p      bpf.Packet
	allow  bool
}

// checkVerdicts runs the cases in order, on one datapath: a case sees the
// state the earlier ones left.
func checkVerdicts(t *testing.T, objs *bpf.DatapathObjects, cases []verdictCase) {
	t.Helper()
	frames := make([]frameCase, len(cases))
	for i, tc := range cases {
		frames[i] = frameCase{tc.name, tc.egress, tc.p.Frame(), tc.allow}
	}
	checkFrames(t, objs, frames)
}

// frameCase is a verdictCase for a frame that Packet cannot describe.
type frameCase struct {
	name   string
	egress bool
	frame  []byte
	allow  bool
}

func checkFrames(t *testing.T, objs *bpf.DatapathObjects, cases []frameCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			prog := objs.PciIngress
			if tc.egress {
				prog = objs.PciEgress
			}
			want := uint32(verdictDrop)
			if tc.allow {
				want = verdictNext
			}
			if got := runFrame(t, prog, tc.frame); got != want {
				t.Errorf("verdict %#x, want %#x (allow=%v)", got, want, tc.allow)
			}
		})
	}
}

var (
	host4 = netip.MustParseAddr("192.0.2.1")
	host6 = netip.MustParseAddr("2001:db8::1")
)

func in4(src string, proto uint8, dport uint16) bpf.Packet {
	return bpf.Packet{Src: netip.MustParseAddr(src), Dst: host4, Proto: proto, Sport: 40000, Dport: dport}
}

func out(dst string, proto uint8, dport uint16) bpf.Packet {
	d := netip.MustParseAddr(dst)
	src := host4
	if d.Is6() {
		src = host6
	}
	return bpf.Packet{Src: src, Dst: d, Proto: proto, Sport: 40001, Dport: dport}
}

// Cases from public bug reports in peer projects.

func TestExceptNarrowsOnlyItsOwnPeer(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: except}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.5/32]}}]
      ports: [{protocol: TCP, port: 80}]
    - from: [{ipBlock: {cidr: 10.0.1.0/24}}]
      ports: [{protocol: TCP, port: 443}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"10.0.1.5 to 443 allowed by rule B", false, in4("10.0.1.5", tcp, 443), true},
		{"10.0.1.5 to 80 excepted from rule A", false, in4("10.0.1.5", tcp, 80), false},
		{"10.0.2.9 to 80 allowed by rule A", false, in4("10.0.2.9", tcp, 80), true},
		{"10.0.2.9 to 443 outside rule B", false, in4("10.0.2.9", tcp, 443), false},
	})
}

func TestPortlessRuleSurvivesMerge(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: merge}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
    - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
      ports: [{protocol: TCP, port: 443}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"TCP 22 to 10.0.9.9", true, out("10.0.9.9", tcp, 22), true},
		{"UDP 5000 to 10.0.9.9", true, out("10.0.9.9", udp, 5000), true},
		{"TCP 443 to 10.0.9.9", true, out("10.0.9.9", tcp, 443), true},
		{"TCP 22 to 10.1.0.1 outside", true, out("10.1.0.1", tcp, 22), false},
	})
}

func TestIPv4AnyNeverAdmitsIPv6(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: v4-any}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 0.0.0.0/0}}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"IPv4 TCP 443 anywhere", true, out("198.51.100.7", tcp, 443), true},
		{"IPv6 TCP 443", true, out("2001:db8:1::7", tcp, 443), false},
		{"IPv6 UDP 53", true, out("2001:db8:1::53", udp, 53), false},
		{"IPv4-mapped IPv6", true, out("::ffff:198.51.100.7", tcp, 443), false},
	})
}

func TestEmptyIngressListDeniesAllIngress(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: deny-in}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: []
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"ingress TCP 443", false, in4("10.0.0.1", tcp, 443), false},
		{"ingress UDP 53", false, in4("10.0.0.2", udp, 53), false},
		{"egress is not filtered", true, out("10.0.0.3", tcp, 22), true},
	})
}

func TestEmptyIngressRuleAllowsAllIngress(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: allow-in}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"ingress TCP 443", false, in4("10.0.0.1", tcp, 443), true},
		{"ingress UDP 53", false, in4("10.0.0.2", udp, 53), true},
		{"ingress IPv6", false, bpf.Packet{Src: netip.MustParseAddr("2001:db8::9"), Dst: host6, Proto: tcp, Sport: 1, Dport: 22}, true},
	})
}

func TestRepliesOfAllowedFlowsPass(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: both}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress:
    - to: [{ipBlock: {cidr: 10.9.0.0/16}}]
      ports: [{protocol: UDP, port: 53}]
`, "")
	query := out("10.9.0.53", udp, 53)
	reply := bpf.Packet{Src: query.Dst, Dst: query.Src, Proto: udp, Sport: 53, Dport: query.Sport}
	checkVerdicts(t, objs, []verdictCase{
		{"unsolicited reply-shaped packet is dropped", false, reply, false},
		{"query out", true, query, true},
		{"its reply in", false, reply, true},
		{"another port from the same peer is dropped", false, bpf.Packet{Src: query.Dst, Dst: query.Src, Proto: udp, Sport: 53, Dport: 9}, false},
	})
}

func TestNonIPInGovernedDirection(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: in}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress: [{}]
`, "")
	frame := func(ethertype uint16) []byte {
		b := make([]byte, 60)
		binary.BigEndian.PutUint16(b[12:], ethertype)
		return b
	}
	// Each drop is counted under its reason.
	ethertypeDrops := func() uint64 {
		var per []bpf.DatapathCounter
		if err := objs.Counters.Lookup(bpf.CounterReason(bpf.ReasonEthertype), &per); err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range per {
			n += c.Packets
		}
		return n
	}
	for _, tc := range []struct {
		name      string
		ethertype uint16
		want      uint32
	}{
		{"ARP passes", 0x0806, verdictNext},
		{"LLDP is dropped", 0x88cc, verdictDrop},
		{"a tag around an unknown ethertype is dropped", 0x8100, verdictDrop},
	} {
		before := ethertypeDrops()
		ret, err := objs.PciIngress.Run(&ebpf.RunOptions{Data: frame(tc.ethertype)})
		if err != nil {
			t.Fatal(err)
		}
		if ret != tc.want {
			t.Errorf("%s: verdict %#x, want %#x", tc.name, ret, tc.want)
		}
		wantCounted := uint64(0)
		if tc.want == verdictDrop {
			wantCounted = 1
		}
		if got := ethertypeDrops() - before; got != wantCounted {
			t.Errorf("%s: %d ethertype drops counted, want %d", tc.name, got, wantCounted)
		}
	}
}

func TestNeighbourDiscoveryPassesADenyAllPolicy(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: []
`, "")
	linkLocal := netip.MustParseAddr("fe80::1")
	icmp6From := func(src netip.Addr, typ byte, hopByHop bool, hopLimit byte) []byte {
		b := make([]byte, 14+40, 128)
		b[12], b[13] = 0x86, 0xdd
		ip := b[14:]
		ip[0] = 0x60
		ip[6] = 58
		ip[7] = hopLimit
		copy(ip[8:], src.AsSlice())
		copy(ip[24:], netip.MustParseAddr("ff02::16").AsSlice())
		if hopByHop {
			ip[6] = 0
			// next header ICMPv6, length 0 (8 bytes), router alert
			b = append(b, 58, 0, 5, 2, 0, 0, 1, 0)
		}
		b = append(b, typ, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint16(b[14+4:], uint16(len(b)-14-40))
		return b
	}
	icmp6 := func(typ byte, hopByHop bool, hopLimit byte) []byte {
		src := host6
		if typ == 143 || (typ >= 130 && typ <= 132) {
			src = linkLocal
		}
		return icmp6From(src, typ, hopByHop, hopLimit)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"neighbour solicitation", icmp6(135, false, 255), verdictNext},
		{"router advertisement", icmp6(134, false, 255), verdictNext},
		{"MLDv2 report behind hop-by-hop", icmp6(143, true, 1), verdictNext},
		{"echo request", icmp6(128, false, 255), verdictDrop},
		{"echo request behind hop-by-hop", icmp6(128, true, 1), verdictDrop},
		// Receivers ignore these with another hop limit (RFC 4861, 3810):
		// they could only be a way past the policy to a distant host.
		{"neighbour solicitation with hop limit 64", icmp6(135, false, 64), verdictDrop},
		{"MLDv2 report with hop limit 64", icmp6(143, true, 64), verdictDrop},
		{"MLDv2 report from a global address", icmp6From(host6, 143, true, 1), verdictDrop},
		{"fragmented neighbour solicitation", bpf.Packet{Src: host6, Dst: netip.MustParseAddr("ff02::1:ff00:2"), Proto: 58, ICMPType: 135, Frag: bpf.FirstFrag, FragID: 1}.Frame(), verdictDrop},
	} {
		for _, prog := range []*ebpf.Program{objs.PciIngress, objs.PciEgress} {
			ret, err := prog.Run(&ebpf.RunOptions{Data: tc.data})
			if err != nil {
				t.Fatal(err)
			}
			if ret != tc.want {
				t.Errorf("%s: verdict %#x, want %#x", tc.name, ret, tc.want)
			}
		}
	}
}

func TestEveryDropReasonHasAName(t *testing.T) {
	// enum reason in pcisegment.c runs 1..len(Reasons).
	for i, r := range bpf.Reasons {
		if r != uint8(i+1) || strings.HasPrefix(bpf.ReasonName(r), "reason_") {
			t.Errorf("reason %d: %q", r, bpf.ReasonName(r))
		}
	}
}

// Semantics, table by table: each policy is compiled and applied to the
// real programs, and crafted frames go through BPF_PROG_TEST_RUN in order.

var sctp = uint8(132)

func in6(src string, proto uint8, dport uint16) bpf.Packet {
	return bpf.Packet{Src: netip.MustParseAddr(src), Dst: host6, Proto: proto, Sport: 40000, Dport: dport}
}

// reply is the packet answering p.
func reply(p bpf.Packet) bpf.Packet {
	return bpf.Packet{Src: p.Dst, Dst: p.Src, Proto: p.Proto, Sport: p.Dport, Dport: p.Sport}
}

// icmpError is an ICMP (IPv4) or ICMPv6 error of type and code from src to
// dst, quoting the start of q.
func icmpError(src, dst netip.Addr, typ, code uint8, q bpf.Packet) []byte {
	proto, off := uint8(1), 14+20
	if src.Is6() {
		proto, off = 58, 14+40
	}
	b := bpf.Packet{Src: src, Dst: dst, Proto: proto, ICMPType: typ, Quote: &q}.Frame()
	b[off+1] = code
	return b
}

func TestEndPortRangeIsInclusive(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: range}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 198.51.100.0/24}}]
      ports: [{protocol: TCP, port: 32000, endPort: 32768}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"TCP 31999 below the range", false, in4("198.51.100.7", tcp, 31999), false},
		{"TCP 32000 first port", false, in4("198.51.100.7", tcp, 32000), true},
		{"TCP 32001", false, in4("198.51.100.7", tcp, 32001), true},
		{"TCP 32768 endPort itself", false, in4("198.51.100.7", tcp, 32768), true},
		{"TCP 32769 above the range", false, in4("198.51.100.7", tcp, 32769), false},
		{"UDP 32100 in the range but another protocol", false, in4("198.51.100.7", udp, 32100), false},
		{"TCP 32100 from outside the cidr", false, in4("198.51.101.7", tcp, 32100), false},
	})
}

func TestSCTPAndTCPPortsAreKeptApart(t *testing.T) {
	const yaml = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: diameter}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 10.10.0.0/16}}]
      ports: [{protocol: SCTP, port: 3868}, {protocol: TCP, port: 443}]
`
	_, c := compileYAML(t, yaml, "")
	for _, p := range c.Ports {
		if p.Proto == 0 {
			t.Errorf("compiled entry %+v allows every protocol", p)
		}
	}
	objs := datapath(t, yaml, "")
	checkVerdicts(t, objs, []verdictCase{
		{"SCTP 3868", false, in4("10.10.3.4", sctp, 3868), true},
		{"SCTP 443", false, in4("10.10.3.4", sctp, 443), false},
		{"TCP 3868", false, in4("10.10.3.4", tcp, 3868), false},
		{"TCP 443", false, in4("10.10.3.4", tcp, 443), true},
		{"UDP 3868", false, in4("10.10.3.4", udp, 3868), false},
	})
}

func TestEmptyPortEntryMeansEveryTCPPort(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: any-tcp}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]
      ports: [{}, {port: 80}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"TCP 81", true, out("192.0.2.9", tcp, 81), true},
		{"TCP 80", true, out("192.0.2.9", tcp, 80), true},
		{"TCP 65535", true, out("192.0.2.9", tcp, 65535), true},
		{"UDP 81", true, out("192.0.2.9", udp, 81), false},
		{"SCTP 80", true, out("192.0.2.9", sctp, 80), false},
	})
}

func TestPrefixLengthsAtTheEdges(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: edges}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ipBlock: {cidr: "::/0"}}]
      ports: [{port: 22}]
  egress:
    - to:
        - ipBlock: {cidr: 8.8.8.8/32}
        - ipBlock: {cidr: 128.0.0.0/1}
        - ipBlock: {cidr: "2001:db8:5::8/128"}
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"/32: the address", true, out("8.8.8.8", udp, 53), true},
		{"/32: one below", true, out("8.8.8.7", udp, 53), false},
		{"/32: one above", true, out("8.8.8.9", udp, 53), false},
		{"/1: last address below it", true, out("127.255.255.255", tcp, 443), false},
		{"/1: its first address", true, out("128.0.0.0", tcp, 443), true},
		{"/1: its last address", true, out("255.255.255.255", tcp, 443), true},
		{"/128: the address", true, out("2001:db8:5::8", tcp, 443), true},
		{"/128: one below", true, out("2001:db8:5::7", tcp, 443), false},
		{"/128: one above", true, out("2001:db8:5::9", tcp, 443), false},
		{"::/0: any IPv6 peer", false, in6("2001:db8:7::1", tcp, 22), true},
		{"::/0: the IPv6 unspecified address", false, in6("::", tcp, 22), true},
		{"::/0: all ones", false, in6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", tcp, 22), true},
		{"::/0: another port", false, in6("2001:db8:7::1", tcp, 23), false},
		{"::/0 admits no IPv4 peer", false, in4("10.0.0.1", tcp, 22), false},
	})
}

func TestOverlappingRulesAreAUnion(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: union}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{protocol: TCP, port: 80}]
    - to: [{ipBlock: {cidr: 10.1.2.0/24}}]
      ports: [{protocol: TCP, port: 443}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"10.1.2.3 on 80 by the wider rule", true, out("10.1.2.3", tcp, 80), true},
		{"10.1.2.3 on 443 by the narrower rule", true, out("10.1.2.3", tcp, 443), true},
		{"10.1.2.3 on 22", true, out("10.1.2.3", tcp, 22), false},
		{"10.9.9.9 on 80", true, out("10.9.9.9", tcp, 80), true},
		{"10.9.9.9 on 443", true, out("10.9.9.9", tcp, 443), false},
	})
}

const https443Only = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: https}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - ports: [{protocol: TCP, port: 443}]
`

func TestFragmentsFollowTheirFirstFragment(t *testing.T) {
	for _, fam := range []struct {
		name string
		peer string
	}{{"IPv4", "203.0.113.5"}, {"IPv6", "2001:db8:9::5"}} {
		t.Run(fam.name, func(t *testing.T) {
			objs := datapath(t, https443Only, "")
			frag := func(dport uint16, f bpf.Fragment, id uint32, l4 int) bpf.Packet {
				p := in4(fam.peer, tcp, dport)
				if p.Src.Is6() {
					p.Dst = host6
				}
				p.Frag, p.FragID, p.L4Bytes = f, id, l4
				return p
			}
			other := frag(443, bpf.LaterFrag, 2, 0)
			other.Src = netip.MustParseAddr(map[bool]string{true: "203.0.113.6", false: "2001:db8:9::6"}[other.Src.Is4()])
			checkVerdicts(t, objs, []verdictCase{
				{"first fragment to 22", false, frag(22, bpf.FirstFrag, 1, 0), false},
				{"its later fragment", false, frag(22, bpf.LaterFrag, 1, 0), false},
				{"first fragment to 443", false, frag(443, bpf.FirstFrag, 2, 0), true},
				{"its later fragment", false, frag(443, bpf.LaterFrag, 2, 0), true},
				{"same id from another source", false, other, false},
				{"later fragment whose first was never seen, bytes like port 443", false, frag(443, bpf.LaterFrag, 3, 0), false},
				{"first fragment with 2 bytes of TCP header", false, frag(443, bpf.FirstFrag, 4, 2), false},
				{"its later fragment", false, frag(443, bpf.LaterFrag, 4, 0), false},
				{"first fragment with exactly the ports", false, frag(443, bpf.FirstFrag, 5, 4), true},
			})
		})
	}
}

func TestStateFollowsOnlyAllowedPackets(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: dns}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress:
    - to: [{ipBlock: {cidr: 10.96.0.10/32}}, {ipBlock: {cidr: "fd00:96::a/128"}}]
      ports: [{protocol: UDP, port: 53}]
`, "")
	for _, fam := range []struct {
		name                  string
		dns, other, router    string
		icmpType, unreachCode uint8
	}{
		// fragmentation needed; ICMPv6 packet too big
		{"IPv4", "10.96.0.10", "10.96.0.11", "192.0.2.254", 3, 4},
		{"IPv6", "fd00:96::a", "fd00:96::b", "2001:db8::fe", 2, 0},
	} {
		t.Run(fam.name, func(t *testing.T) {
			query := out(fam.dns, udp, 53)
			denied := out(fam.other, udp, 53)
			unknown := query
			unknown.Sport = 40999
			unsolicited := reply(query)
			unsolicited.Dport = 40002
			router := netip.MustParseAddr(fam.router)
			host := query.Src
			icmp := func(q bpf.Packet) []byte { return icmpError(router, host, fam.icmpType, fam.unreachCode, q) }
			checkFrames(t, objs, []frameCase{
				{"ICMP error quoting a query not sent yet", false, icmp(query), false},
				{"query out", true, query.Frame(), true},
				{"its reply in", false, reply(query).Frame(), true},
				{"unsolicited packet from the server's port 53", false, unsolicited.Frame(), false},
				{"query to a server not allowed", true, denied.Frame(), false},
				{"packet back from that server", false, reply(denied).Frame(), false},
				{"ICMP error quoting the allowed query", false, icmp(query), true},
				{"ICMP error quoting an unknown flow", false, icmp(unknown), false},
				{"ICMP error quoting the dropped query", false, icmp(denied), false},
				{"ICMP error quoting the reply, the wrong way round", false, icmp(reply(query)), false},
			})
		})
	}
}

func TestIPv4MappedIPv6IsNeverAnIPv4Peer(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: mapped}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{port: 443}]
    - from: [{ipBlock: {cidr: "::ffff:172.16.0.0/108"}}]
      ports: [{port: 22}]
`, "")
	checkVerdicts(t, objs, []verdictCase{
		{"IPv4 10.1.2.3 by the IPv4 rule", false, in4("10.1.2.3", tcp, 443), true},
		{"::ffff:10.1.2.3 is IPv6: no IPv4 rule", false, in6("::ffff:10.1.2.3", tcp, 443), false},
		{"::ffff:172.16.0.9 by the IPv6 rule", false, in6("::ffff:172.16.0.9", tcp, 22), true},
		{"IPv4 172.16.0.9 is not the mapped prefix", false, in4("172.16.0.9", tcp, 22), false},
	})
}

func TestIPv6ExtensionHeadersAreWalked(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: ext}
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: "2001:db8:a::/48"}}]
      ports: [{port: 443}]
    - from: [{ipBlock: {cidr: "2001:db8:b::/48"}}]
`, "")
	with := func(src string, dport uint16, ext ...uint8) bpf.Packet {
		p := in6(src, tcp, dport)
		p.IPv6Ext = ext
		return p
	}
	repeat := func(h uint8, n int) []uint8 {
		s := make([]uint8, n)
		for i := range s {
			s[i] = h
		}
		return s
	}
	// The walk's bound, as in pcisegment.c.
	const bound = 8
	frag := with("2001:db8:a::1", 443, 0, 60)
	frag.Frag, frag.FragID = bpf.FirstFrag, 7
	later := frag
	later.Frag = bpf.LaterFrag
	checkVerdicts(t, objs, []verdictCase{
		{"hop-by-hop, routing, destination options: TCP 443", false, with("2001:db8:a::1", 443, 0, 43, 60), true},
		{"behind the same headers: TCP 22", false, with("2001:db8:a::1", 22, 0, 43, 60), false},
		{"first fragment behind options", false, frag, true},
		{"its later fragment", false, later, true},
		{"unknown header 253 before TCP 443", false, with("2001:db8:a::1", 443, 253), false},
		{"mobility header 135", false, with("2001:db8:a::1", 443, 135), false},
		{"headers up to the bound", false, with("2001:db8:a::1", 443, repeat(60, bound)...), true},
		{"one header more than the bound", false, with("2001:db8:a::1", 443, repeat(60, bound+1)...), false},
		// A peer allowed every protocol: an unknown header must not pass
		// as a protocol of that name.
		{"every protocol allowed: plain TCP", false, with("2001:db8:b::1", 22), true},
		{"every protocol allowed: unknown header 253", false, with("2001:db8:b::1", 22, 253), false},
		{"every protocol allowed: unknown header 253 after the bound", false, with("2001:db8:b::1", 22, append(repeat(60, bound), 253)...), false},
		{"every protocol allowed: mobility header after the bound", false, with("2001:db8:b::1", 22, append(repeat(0, 1), append(repeat(60, bound-1), 135)...)...), false},
	})
}

func TestVLANTagsAreSeenThrough(t *testing.T) {
	objs := datapath(t, https443Only, "")
	tagged := func(p bpf.Packet, tags ...uint16) bpf.Packet {
		p.VLANs = tags
		return p
	}
	// 802.1ad outer tag (QinQ), as Packet writes only 802.1Q.
	qinq := tagged(in4("10.20.0.1", tcp, 22), 100, 200).Frame()
	binary.BigEndian.PutUint16(qinq[12:], 0x88a8)
	qinq443 := tagged(in4("10.20.0.1", tcp, 443), 100, 200).Frame()
	binary.BigEndian.PutUint16(qinq443[12:], 0x88a8)
	arp := func(tags ...uint16) []byte {
		b := make([]byte, 12, 64)
		for _, id := range tags {
			b = binary.BigEndian.AppendUint16(b, 0x8100)
			b = binary.BigEndian.AppendUint16(b, id)
		}
		b = binary.BigEndian.AppendUint16(b, 0x0806)
		return append(b, make([]byte, 28)...)
	}
	lldp := make([]byte, 60)
	binary.BigEndian.PutUint16(lldp[12:], 0x88cc)
	checkFrames(t, objs, []frameCase{
		{"untagged TCP 443", false, in4("10.20.0.1", tcp, 443).Frame(), true},
		{"untagged TCP 22", false, in4("10.20.0.1", tcp, 22).Frame(), false},
		{"one tag: TCP 443", false, tagged(in4("10.20.0.2", tcp, 443), 100).Frame(), true},
		{"one tag: TCP 22", false, tagged(in4("10.20.0.2", tcp, 22), 100).Frame(), false},
		{"two tags: TCP 443", false, tagged(in4("10.20.0.3", tcp, 443), 100, 200).Frame(), true},
		{"two tags: TCP 22", false, tagged(in4("10.20.0.3", tcp, 22), 100, 200).Frame(), false},
		{"802.1ad and 802.1Q: TCP 443", false, qinq443, true},
		{"802.1ad and 802.1Q: TCP 22", false, qinq, false},
		{"two tags: IPv6 TCP 443", false, tagged(in6("2001:db8:c::1", tcp, 443), 100, 200).Frame(), true},
		{"two tags: IPv6 TCP 22", false, tagged(in6("2001:db8:c::1", tcp, 22), 100, 200).Frame(), false},
		{"three tags in a governed direction: TCP 443", false, tagged(in4("10.20.0.4", tcp, 443), 100, 200, 300).Frame(), false},
		{"three tags where nothing is governed", true, tagged(out("10.20.0.4", tcp, 443), 100, 200, 300).Frame(), true},
		{"ARP", false, arp(), true},
		{"ARP behind two tags", false, arp(100, 200), true},
		{"LLDP in a governed direction", false, lldp, false},
		{"LLDP where nothing is governed", true, lldp, true},
	})
}

// TestPolicyOverCapacityChangesNothing: a set that does not fit the sizes
// the loader chose is refused before any map write, naming the flag to
// raise, and the policy in force keeps deciding.
func TestPolicyOverCapacityChangesNothing(t *testing.T) {
	testenv.RequireRoot(t)
	sizes := bpf.Sizes{Prefixes: 4, PortEntries: 3, Flows: 64}
	objs, err := bpf.LoadWithSizes(sizes)
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	for name, want := range map[string]uint32{"addr4": 8, "addr6": 8, "ports": 6, "conntrack": 128} {
		m, err := objs.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.MaxEntries(); got != want {
			t.Errorf("map %s holds %d entries, want %d", name, got, want)
		}
	}
	pm := writerOf(objs)
	if got, want := pm.Capacity(), (Capacity{Prefixes: 4, PortEntries: 3}); got != want {
		t.Errorf("capacity %+v, want %+v", got, want)
	}

	policyWith := func(cidrs []string, ports string) string {
		var b strings.Builder
		b.WriteString("apiVersion: pci-segment/v1\nkind: NetworkPolicy\nmetadata: {name: cap}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - ports: " + ports + "\n      from:\n")
		for _, c := range cidrs {
			fmt.Fprintf(&b, "        - ipBlock: {cidr: %q}\n", c)
		}
		return b.String()
	}
	applyYAML := func(yaml string, gen uint64) error {
		set, c := compileYAML(t, yaml, "")
		return pm.Apply(c, gen, set.Hash)
	}

	// Exactly the capacity fits, and so does the next set of that size
	// while the first is still in the other half.
	if err := applyYAML(policyWith([]string{"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"}, "[{port: 80}]"), 1); err != nil {
		t.Fatalf("a set of exactly the capacity: %v", err)
	}
	if err := applyYAML(policyWith([]string{"10.0.0.0/16", "172.16.0.0/12", "2001:db8::/32", "fd00::/8"}, "[{port: 443}, {protocol: UDP, port: 53}]"), 2); err != nil {
		t.Fatalf("a second set of the capacity: %v", err)
	}
	before := dumpPolicyMaps(t, objs)

	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"one prefix too many", policyWith([]string{"10.0.0.0/16", "10.9.0.0/16", "172.16.0.0/12", "2001:db8::/32", "fd00::/8"}, "[{port: 443}]"),
			[]string{"needs 5 address prefix entries (3 IPv4, 2 IPv6), the datapath holds 4", "raise --max-prefixes to at least 5"}},
		{"one port entry too many", policyWith([]string{"10.0.0.0/16"}, "[{port: 443}, {port: 22}, {port: 25}, {port: 587}]"),
			[]string{"needs 4 port entries, the datapath holds 3", "raise --max-port-entries to at least 4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := applyYAML(tc.yaml, 3)
			if err == nil {
				t.Fatal("applied a set over capacity")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if after := dumpPolicyMaps(t, objs); !reflect.DeepEqual(before, after) {
				t.Errorf("maps changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
	checkVerdicts(t, objs, []verdictCase{
		{"the set in force still allows TCP 443", false, in4("10.0.3.4", tcp, 443), true},
		{"and still denies TCP 80", false, in4("10.1.3.4", tcp, 80), false},
	})
}

// dumpPolicyMaps reads every entry of the maps Apply writes.
func dumpPolicyMaps(t *testing.T, objs *bpf.DatapathObjects) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, name := range []string{"addr4", "addr6", "ports", "selector", "halves", "info"} {
		m, err := objs.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		var k, v []byte
		it := m.Iterate()
		for it.Next(&k, &v) {
			out[name] = append(out[name], hex.EncodeToString(k)+"="+hex.EncodeToString(v))
		}
		if err := it.Err(); err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		slices.Sort(out[name])
	}
	return out
}

func TestEchoRepliesOfAllowedPingsPass(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: ping-out}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: [{}]
`, "")
	peer4, peer6 := netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("2001:db8:9::9")
	echo := func(src, dst netip.Addr, typ uint8, id uint16) bpf.Packet {
		proto := uint8(1)
		if src.Is6() {
			proto = 58
		}
		// The identifier sits where a transport header has its
		// sequence number: Packet puts Sport/Dport at the start, so
		// build it by hand.
		return bpf.Packet{Src: src, Dst: dst, Proto: proto, ICMPType: typ, EchoID: id}
	}
	checkVerdicts(t, objs, []verdictCase{
		{"unsolicited echo reply is dropped", false, echo(peer4, host4, 0, 7), false},
		{"echo request out", true, echo(host4, peer4, 8, 7), true},
		{"its reply in", false, echo(peer4, host4, 0, 7), true},
		{"a reply with another id is dropped", false, echo(peer4, host4, 0, 8), false},
		{"an echo request in is dropped", false, echo(peer4, host4, 8, 7), false},
		{"IPv6 echo request out", true, echo(host6, peer6, 128, 9), true},
		{"its reply in", false, echo(peer6, host6, 129, 9), true},
	})
}

// TestIPv6FragmentsWithHeadersAfterTheFragmentHeader: a destination options
// header may follow the fragment header (RFC 8200 4.1); the first fragment
// then names the options as the fragment's next header, as every later
// fragment does, and the later fragments must still follow it.
func TestIPv6FragmentsWithHeadersAfterTheFragmentHeader(t *testing.T) {
	objs := datapath(t, https443Only, "")
	peer := netip.MustParseAddr("2001:db8:9::7")
	frame := func(first bool, dport uint16) []byte {
		b := make([]byte, 14, 128)
		binary.BigEndian.PutUint16(b[12:], 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		ip[6] = 44 // fragment
		ip[7] = 64
		copy(ip[8:], peer.AsSlice())
		copy(ip[24:], host6.AsSlice())
		frag := []byte{60, 0, 0, 0, 0, 0, 0x12, 0x34} // next: destination options
		var rest []byte
		if first {
			frag[3] = 1 // offset 0, more fragments
			rest = append([]byte{6, 0, 1, 4, 0, 0, 0, 0}, make([]byte, 20)...)
			binary.BigEndian.PutUint16(rest[8:], 40000)
			binary.BigEndian.PutUint16(rest[10:], dport)
			rest[8+12] = 5 << 4
		} else {
			binary.BigEndian.PutUint16(frag[2:], 1480) // offset 185*8, last
			rest = make([]byte, 16)
		}
		binary.BigEndian.PutUint16(ip[4:], uint16(len(frag)+len(rest)))
		return append(append(append(b, ip...), frag...), rest...)
	}
	checkFrames(t, objs, []frameCase{
		{"later fragment before its first", false, frame(false, 0), false},
		{"first fragment, options after the fragment header, TCP 22", false, frame(true, 22), false},
		{"first fragment, options after the fragment header, TCP 443", false, frame(true, 443), true},
		{"its later fragment", false, frame(false, 0), true},
	})
}

func TestSourceRoutedPacketsAreDropped(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: egress-443}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.9.0.0/16}}, {ipBlock: {cidr: "2001:db8:9::/48"}}]
      ports: [{protocol: TCP, port: 443}]
`, "")
	v6 := bpf.Packet{Src: host6, Dst: netip.MustParseAddr("2001:db8:9::1"), Proto: tcp, Sport: 40000, Dport: 443}
	// A routing header (type 4, segments left 1) behind the fixed header.
	routed6 := v6.Frame()
	routed6 = append(routed6[:14+40], append([]byte{6, 0, 4, 1, 0, 0, 0, 0}, routed6[14+40:]...)...)
	routed6[14+6] = 43
	binary.BigEndian.PutUint16(routed6[14+4:], binary.BigEndian.Uint16(routed6[14+4:])+8)

	v4 := out("10.9.0.1", tcp, 443)
	lsrr := v4.Frame()
	// ihl 6: one 4-byte option word holding LSRR (type 0x83, length 3) and
	// end of options; the transport header follows.
	lsrr = append(lsrr[:14+20], append([]byte{0x83, 3, 4, 0}, lsrr[14+20:]...)...)
	lsrr[14] = 0x46
	binary.BigEndian.PutUint16(lsrr[14+2:], binary.BigEndian.Uint16(lsrr[14+2:])+4)
	nop := append([]byte(nil), lsrr...)
	nop[14+20], nop[14+21], nop[14+22] = 1, 1, 1 // no-op options only

	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"IPv6 to an allowed peer", v6.Frame(), verdictNext},
		{"IPv6 with a routing header with segments left", routed6, verdictDrop},
		{"IPv4 to an allowed peer", v4.Frame(), verdictNext},
		{"IPv4 with loose source routing", lsrr, verdictDrop},
		{"IPv4 with no-op options", nop, verdictNext},
	} {
		ret, err := objs.PciEgress.Run(&ebpf.RunOptions{Data: tc.data})
		if err != nil {
			t.Fatal(err)
		}
		if ret != tc.want {
			t.Errorf("%s: verdict %#x, want %#x", tc.name, ret, tc.want)
		}
	}
}

func TestUnsolicitedEchoReplyOpensNothing(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: egress-only}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress: []
`, "")
	peer := netip.MustParseAddr("198.51.100.77")
	checkVerdicts(t, objs, []verdictCase{
		{"inbound echo reply (ingress not governed)", false, bpf.Packet{Src: peer, Dst: host4, Proto: 1, ICMPType: 0, EchoID: 77}, true},
		{"outbound echo request with that id stays denied", true, bpf.Packet{Src: host4, Dst: peer, Proto: 1, ICMPType: 8, EchoID: 77}, false},
	})
}

func TestUnreachableQuotingAnAllowedPingPasses(t *testing.T) {
	objs := datapath(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: ping-out}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: []
  egress: [{}]
`, "")
	peer, router := netip.MustParseAddr("198.51.100.9"), netip.MustParseAddr("203.0.113.1")
	ping := bpf.Packet{Src: host4, Dst: peer, Proto: 1, ICMPType: 8, EchoID: 42}
	unreachable := func(quoted bpf.Packet) bpf.Packet {
		return bpf.Packet{Src: router, Dst: host4, Proto: 1, ICMPType: 3, Quote: &quoted}
	}
	other := ping
	other.EchoID = 43
	checkVerdicts(t, objs, []verdictCase{
		{"unreachable quoting a ping never sent is dropped", false, unreachable(ping), false},
		{"the ping goes out", true, ping, true},
		{"unreachable quoting it comes in", false, unreachable(ping), true},
		{"unreachable quoting another id is dropped", false, unreachable(other), false},
	})
}
