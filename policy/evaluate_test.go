package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// evalSet parses docs (YAML documents) into a set, as Load would.
func evalSet(t *testing.T, docs string) *Set {
	t.Helper()
	pols, err := Parse("eval.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	set := &Set{Policies: pols}
	for i := 1; i < len(pols); i++ {
		if pols[i-1].Key() >= pols[i].Key() {
			t.Fatalf("test documents must be in key order: %s before %s", pols[i-1].Key(), pols[i].Key())
		}
	}
	return set
}

const evalDocs = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: a-web}
spec:
  podSelector: {matchLabels: {tier: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 198.51.100.0/24}}]
      ports: [{protocol: TCP, port: 32000, endPort: 32768}]
    - from:
        - {ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}
        - {ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.5/32]}}
      ports: [{protocol: SCTP, port: 3868}, {}]
---
apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: b-db}
spec:
  podSelector: {matchLabels: {tier: db}}
  ingress:
    - from: [{ipBlock: {cidr: "::ffff:10.0.0.0/104"}}]
      ports: [{protocol: UDP}]
---
apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: c-all}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]
      ports: [{protocol: UDP, port: 53}]
    - to: [{ipBlock: {cidr: 2001:db8::/32}}]
---
apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: d-icmp}
spec:
  podSelector: {matchLabels: {tier: web}}
  ingress:
    - from: [{ipBlock: {cidr: 203.0.113.0/24}}]
`

func TestEvaluate(t *testing.T) {
	set := evalSet(t, evalDocs)
	web := map[string]string{"tier": "web"}
	db := map[string]string{"tier": "db"}
	addr := netip.MustParseAddr
	in := func(peer string, proto uint8, port uint16) Packet {
		return Packet{Direction: Ingress, Peer: addr(peer), Protocol: proto, Port: port}
	}
	out := func(peer string, proto uint8, port uint16) Packet {
		return Packet{Direction: Egress, Peer: addr(peer), Protocol: proto, Port: port}
	}
	with := func(p Packet, f func(*Packet)) Packet { f(&p); return p }
	reply := func(p *Packet) { p.Reply = true }
	later := func(p *Packet) { p.Fragment = LaterFragment }
	first := func(p *Packet) { p.Fragment = FirstFragment }

	tests := []struct {
		name   string
		labels map[string]string
		p      Packet
		reason string
		policy string
		rule   string
		peer   string
		port   string
	}{
		{"below the range", web, in("198.51.100.9", tcp, 31999), ReasonNoRule, "", "", "", ""},
		{"range start", web, in("198.51.100.9", tcp, 32000), ReasonRuleMatches, "a-web", "spec.ingress[0]", "198.51.100.0/24", "TCP 32000-32768"},
		{"range end", web, in("198.51.100.9", tcp, 32768), ReasonRuleMatches, "a-web", "spec.ingress[0]", "198.51.100.0/24", "TCP 32000-32768"},
		{"above the range", web, in("198.51.100.9", tcp, 32769), ReasonNoRule, "", "", "", ""},
		{"range is TCP only", web, in("198.51.100.9", udp, 32100), ReasonNoRule, "", "", "", ""},
		{"SCTP port", web, in("10.9.9.9", sctp, 3868), ReasonRuleMatches, "a-web", "spec.ingress[1]", "10.0.0.0/8", "SCTP 3868"},
		{"{} is every TCP port", web, in("10.9.9.9", tcp, 1), ReasonRuleMatches, "a-web", "spec.ingress[1]", "10.0.0.0/8", "every TCP port"},
		{"{} is not UDP", web, in("10.9.9.9", udp, 1), ReasonNoRule, "", "", "", ""},
		{"except of one peer, covered by the next", web, in("10.0.1.9", tcp, 80), ReasonRuleMatches, "a-web", "spec.ingress[1]", "10.0.1.0/24", "every TCP port"},
		{"excepted by both peers", web, in("10.0.1.5", tcp, 80), ReasonNoRule, "", "", "", ""},
		{"ICMP needs a rule without ports", web, in("10.9.9.9", icmp, 0), ReasonNoRule, "", "", "", ""},
		{"ICMP by a rule without ports", web, in("203.0.113.7", icmp, 0), ReasonRuleMatches, "d-icmp", "spec.ingress[0]", "203.0.113.0/24", "any"},
		{"port of ICMP is ignored", web, in("203.0.113.7", icmp, 77), ReasonRuleMatches, "d-icmp", "spec.ingress[0]", "203.0.113.0/24", "any"},
		{"other protocol by a rule without ports", web, in("203.0.113.7", 47, 0), ReasonRuleMatches, "d-icmp", "spec.ingress[0]", "203.0.113.0/24", "any"},
		{"other protocol not by a ported rule", web, in("10.9.9.9", 47, 0), ReasonNoRule, "", "", "", ""},
		{"IPv4 rule never matches IPv4-mapped IPv6", web, in("::ffff:10.9.9.9", tcp, 80), ReasonNoRule, "", "", "", ""},
		{"IPv4-mapped rule matches IPv4-mapped", db, in("::ffff:10.9.9.9", udp, 5), ReasonRuleMatches, "b-db", "spec.ingress[0]", "::ffff:10.0.0.0/104", "every UDP port"},
		{"IPv4-mapped rule never matches IPv4", db, in("10.9.9.9", udp, 5), ReasonNoRule, "", "", "", ""},
		{"egress governed for every host", nil, out("192.0.2.53", udp, 53), ReasonRuleMatches, "c-all", "spec.egress[0]", "192.0.2.0/24", "UDP 53"},
		{"egress denied", nil, out("192.0.2.53", udp, 54), ReasonNoRule, "", "", "", ""},
		{"ingress of an unlabelled host is not governed", nil, in("10.9.9.9", tcp, 1), ReasonNotGoverned, "", "", "", ""},
		{"IPv6 rule without ports admits ICMPv6", nil, out("2001:db8::9", icmpv6, 0), ReasonRuleMatches, "c-all", "spec.egress[1]", "2001:db8::/32", "any"},
		// A reply is judged as its flow's opening packet the other way.
		{"reply in of an allowed query out", nil, with(in("192.0.2.53", udp, 53), reply), ReasonRuleMatches, "c-all", "spec.egress[0]", "192.0.2.0/24", "UDP 53"},
		{"reply in of a denied query out", nil, with(in("192.0.2.53", udp, 54), reply), ReasonNoRule, "", "", "", ""},
		{"reply out of an allowed connection in", web, with(out("198.51.100.9", tcp, 32000), reply), ReasonRuleMatches, "a-web", "spec.ingress[0]", "198.51.100.0/24", "TCP 32000-32768"},
		{"reply out of a denied connection in", web, with(out("198.51.100.9", tcp, 22), reply), ReasonNoRule, "", "", "", ""},
		{"reply out of ungoverned ingress", nil, with(out("198.51.100.9", tcp, 22), reply), ReasonNotGoverned, "", "", "", ""},
		// A later fragment follows its first fragment.
		{"first fragment allowed", web, with(in("198.51.100.9", tcp, 32000), first), ReasonRuleMatches, "a-web", "spec.ingress[0]", "198.51.100.0/24", "TCP 32000-32768"},
		{"later fragment of an allowed first", web, with(in("198.51.100.9", tcp, 32000), later), ReasonRuleMatches, "a-web", "spec.ingress[0]", "198.51.100.0/24", "TCP 32000-32768"},
		{"later fragment of a denied first", web, with(in("198.51.100.9", tcp, 22), later), ReasonNoRule, "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(set, tc.labels, tc.p)
			if v.Reason() != tc.reason || v.Policy != tc.policy || v.Rule != tc.rule {
				t.Fatalf("%s: got %q (%s %s), want %q (%s %s)", tc.p, v.Reason(), v.Policy, v.Rule, tc.reason, tc.policy, tc.rule)
			}
			if v.Allowed != (tc.reason != ReasonNoRule) || v.Governed != (tc.reason != ReasonNotGoverned) {
				t.Errorf("allowed %v governed %v for reason %q", v.Allowed, v.Governed, v.Reason())
			}
			if tc.reason == ReasonRuleMatches {
				if v.PeerString() != tc.peer || v.PortString() != tc.port {
					t.Errorf("peer %s port %s, want %s %s", v.PeerString(), v.PortString(), tc.peer, tc.port)
				}
				if v.Source.File != "eval.yaml" || v.Source.Line == 0 || v.Source.Doc == 0 {
					t.Errorf("source %+v", v.Source)
				}
			}
			want := tc.p.Direction
			if tc.p.Reply {
				want = opposite(want)
			}
			if v.Direction != want {
				t.Errorf("judged in %s, want %s", v.Direction, want)
			}
		})
	}
}

func TestEvaluateFirstAllowingRuleDecides(t *testing.T) {
	set := evalSet(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: a}
spec:
  podSelector: {}
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/16}}]
      ports: [{protocol: UDP}]
    - from: [{ipBlock: {cidr: 10.1.0.0/16}}, {ipBlock: {cidr: 10.0.0.0/8}}]
      ports: [{port: 80}, {port: 1, endPort: 65535}]
---
apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: b}
spec:
  podSelector: {}
  ingress: [{}]
`)
	v := Evaluate(set, nil, Packet{Direction: Ingress, Peer: netip.MustParseAddr("10.0.0.1"), Protocol: tcp, Port: 80})
	if v.Policy != "a" || v.Rule != "spec.ingress[1]" || v.PeerString() != "10.0.0.0/8" || v.PortString() != "TCP 80" {
		t.Errorf("got %+v", v)
	}
	v = Evaluate(set, nil, Packet{Direction: Ingress, Peer: netip.MustParseAddr("2001:db8::1"), Protocol: 99})
	if v.Policy != "b" || v.Rule != "spec.ingress[0]" || v.PeerString() != "any" || v.PortString() != "any" {
		t.Errorf("got %+v", v)
	}
}

func TestEvaluateEmptyRulesDenyAll(t *testing.T) {
	set := evalSet(t, `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: a}
spec:
  podSelector: {}
  ingress: []
  egress: []
`)
	for _, d := range directions {
		for _, reply := range []bool{false, true} {
			p := Packet{Direction: d, Peer: netip.MustParseAddr("192.0.2.1"), Protocol: tcp, Port: 1, Reply: reply}
			if v := Evaluate(set, nil, p); v.Allowed || !v.Governed {
				t.Errorf("%s: %+v", p, v)
			}
		}
	}
}

func TestEvaluateWithoutPoliciesAllows(t *testing.T) {
	p := Packet{Direction: Egress, Peer: netip.MustParseAddr("192.0.2.1"), Protocol: tcp, Port: 1}
	for _, set := range []*Set{nil, {}} {
		if v := Evaluate(set, nil, p); !v.Allowed || v.Governed || v.Reason() != ReasonNotGoverned {
			t.Errorf("got %+v", v)
		}
	}
}

func TestVerdictString(t *testing.T) {
	set := evalSet(t, evalDocs)
	p := Packet{Direction: Ingress, Peer: netip.MustParseAddr("198.51.100.1"), Protocol: tcp, Port: 32001}
	for _, tc := range []struct {
		labels map[string]string
		p      Packet
		want   string
	}{
		{map[string]string{"tier": "web"}, p, "allow: policy a-web spec.ingress[0] (peer 198.51.100.0/24, port TCP 32000-32768; eval.yaml:8)"},
		{map[string]string{"tier": "web"}, Packet{Direction: Ingress, Peer: p.Peer, Protocol: tcp, Port: 1}, "deny: no rule matches (ingress is governed: default deny)"},
		{nil, p, "allow: direction not governed (ingress is governed by no applying policy)"},
	} {
		if got := Evaluate(set, tc.labels, tc.p).String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
	if s := (Packet{Direction: Egress, Peer: p.Peer, Protocol: udp, Port: 53, Reply: true, Fragment: LaterFragment}).String(); !strings.Contains(s, "UDP port 53 reply later fragment") {
		t.Errorf("packet string %q", s)
	}
}
