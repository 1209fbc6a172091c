package bpf

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// Verdicts as the program returns them (BPF_PROG_TEST_RUN reports a u32).
const (
	verdictNext = 0xffffffff // TCX_NEXT (-1)
	verdictDrop = 2          // TCX_DROP
)

// datapath loads the real programs with the policy compiled for labels.
func datapath(t *testing.T, yaml, labels string) *DatapathObjects {
	t.Helper()
	testenv.RequireRoot(t)
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
	objs, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	pm := &PolicyMaps{Addr4: objs.Addr4, Addr6: objs.Addr6, Ports: objs.Ports,
		Selector: objs.Selector, Halves: objs.Halves, Info: objs.Info}
	if err := pm.Apply(c, 1, set.Hash); err != nil {
		t.Fatal(err)
	}
	return objs
}

func run(t *testing.T, prog *ebpf.Program, p Packet) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: p.Frame()})
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
	p      Packet
	allow  bool
}

func checkVerdicts(t *testing.T, objs *DatapathObjects, cases []verdictCase) {
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
			if got := run(t, prog, tc.p); got != want {
				t.Errorf("verdict %#x, want %#x (allow=%v)", got, want, tc.allow)
			}
		})
	}
}

var (
	host4 = netip.MustParseAddr("192.0.2.1")
	host6 = netip.MustParseAddr("2001:db8::1")
)

func in4(src string, proto uint8, dport uint16) Packet {
	return Packet{Src: netip.MustParseAddr(src), Dst: host4, Proto: proto, Sport: 40000, Dport: dport}
}

func out(dst string, proto uint8, dport uint16) Packet {
	d := netip.MustParseAddr(dst)
	src := host4
	if d.Is6() {
		src = host6
	}
	return Packet{Src: src, Dst: d, Proto: proto, Sport: 40001, Dport: dport}
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
		{"ingress IPv6", false, Packet{Src: netip.MustParseAddr("2001:db8::9"), Dst: host6, Proto: tcp, Sport: 1, Dport: 22}, true},
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
	reply := Packet{Src: query.Dst, Dst: query.Src, Proto: udp, Sport: 53, Dport: query.Sport}
	checkVerdicts(t, objs, []verdictCase{
		{"unsolicited reply-shaped packet is dropped", false, reply, false},
		{"query out", true, query, true},
		{"its reply in", false, reply, true},
		{"another port from the same peer is dropped", false, Packet{Src: query.Dst, Dst: query.Src, Proto: udp, Sport: 53, Dport: 9}, false},
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
	for _, tc := range []struct {
		name      string
		ethertype uint16
		want      uint32
	}{
		{"ARP passes", 0x0806, verdictNext},
		{"LLDP is dropped", 0x88cc, verdictDrop},
		{"a tagged frame is dropped until VLANs are parsed", 0x8100, verdictDrop},
	} {
		ret, err := objs.PciIngress.Run(&ebpf.RunOptions{Data: frame(tc.ethertype)})
		if err != nil {
			t.Fatal(err)
		}
		if ret != tc.want {
			t.Errorf("%s: verdict %#x, want %#x", tc.name, ret, tc.want)
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
	icmp6 := func(typ byte, hopByHop bool) []byte {
		b := make([]byte, 14+40, 128)
		b[12], b[13] = 0x86, 0xdd
		ip := b[14:]
		ip[0] = 0x60
		ip[6] = 58
		copy(ip[8:], host6.AsSlice())
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
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"neighbour solicitation", icmp6(135, false), verdictNext},
		{"router advertisement", icmp6(134, false), verdictNext},
		{"MLDv2 report behind hop-by-hop", icmp6(143, true), verdictNext},
		{"echo request", icmp6(128, false), verdictDrop},
		{"echo request behind hop-by-hop", icmp6(128, true), verdictDrop},
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
