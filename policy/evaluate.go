package policy

import (
	"fmt"
	"net/netip"
)

// Fragment says which part of a datagram a packet is.
type Fragment uint8

const (
	// Unfragmented is a whole datagram.
	Unfragmented Fragment = iota
	// FirstFragment is offset 0 with more to come: it carries the ports.
	FirstFragment
	// LaterFragment is offset > 0: it carries no ports and is judged as
	// its datagram's first fragment.
	LaterFragment
)

func (f Fragment) String() string {
	switch f {
	case FirstFragment:
		return "first fragment"
	case LaterFragment:
		return "later fragment"
	}
	return "unfragmented"
}

// Packet describes a packet for Evaluate, as seen from the host.
type Packet struct {
	Direction Direction
	// Peer is the remote address: the source of an ingress packet, the
	// destination of an egress one. An IPv4 packet has an IPv4 peer; an
	// IPv4-mapped IPv6 address is an IPv6 peer, which only IPv6 prefixes
	// match.
	Peer netip.Addr
	// Protocol is the IP protocol number: 6 TCP, 17 UDP, 132 SCTP, 1 ICMP,
	// 58 ICMPv6, or any other.
	Protocol uint8
	// Port is the flow's service port: the destination port of the packet
	// that opens the flow, which for a reply is its source port. Only TCP,
	// UDP and SCTP have ports; for other protocols Port is ignored.
	Port uint16
	// Reply marks a packet of a flow opened the other way. It is judged as
	// the packet that opened the flow (opposite direction, same peer and
	// Port): replies pass exactly when the opening packet would.
	Reply bool
	// Fragment: a later fragment is judged as its first fragment with the
	// same description, so it passes exactly when that one would.
	Fragment Fragment
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s peer %s %s", p.Direction, p.Peer, protocolName(p.Protocol))
	if hasPorts(p.Protocol) {
		s += fmt.Sprintf(" port %d", p.Port)
	}
	if p.Reply {
		s += " reply"
	}
	if p.Fragment != Unfragmented {
		s += " " + p.Fragment.String()
	}
	return s
}

// protocolName names an IP protocol number.
func protocolName(proto uint8) string {
	switch proto {
	case 1:
		return "ICMP"
	case 58:
		return "ICMPv6"
	}
	if hasPorts(proto) {
		return Protocol(proto).String()
	}
	return fmt.Sprintf("protocol %d", proto)
}

// hasPorts reports whether packets of proto carry ports a rule can name.
func hasPorts(proto uint8) bool {
	switch Protocol(proto) {
	case TCP, UDP, SCTP:
		return true
	}
	return false
}

// Verdict is the reference evaluator's answer for one packet.
type Verdict struct {
	Allowed bool
	// Governed is false when no applying policy governs Direction; the
	// packet is then allowed without any rule.
	Governed bool
	// Direction is the direction whose rules decided: the packet's own, or
	// the opposite one for a reply.
	Direction Direction
	// Policy, Rule (a field path such as "spec.ingress[1]"), Peer, Port and
	// Source name the first rule, in policy key order and then rule order,
	// that allows the packet; they are zero when the packet is denied or
	// the direction is not governed.
	Policy string
	Rule   string
	// Peer is the cidr of the rule's first ipBlock that admits the peer;
	// the zero Prefix when the rule names no peers (every address).
	Peer netip.Prefix
	// Port is the rule's first port entry that admits the packet; the zero
	// Port when the rule names no ports (every port of every protocol).
	Port   Port
	Source Source
}

// Reasons a Verdict gives, as Reason returns them.
const (
	ReasonNotGoverned = "direction not governed"
	ReasonRuleMatches = "rule matches"
	ReasonNoRule      = "no rule matches"
)

// Reason says in a few words what decided the verdict.
func (v Verdict) Reason() string {
	switch {
	case !v.Governed:
		return ReasonNotGoverned
	case v.Allowed:
		return ReasonRuleMatches
	}
	return ReasonNoRule
}

// PeerString is Peer as check prints it: "any" for a rule without peers.
func (v Verdict) PeerString() string {
	if !v.Peer.IsValid() {
		return "any"
	}
	return v.Peer.String()
}

// PortString is Port as check prints it, e.g. "TCP 443", "UDP 1000-2000",
// "every SCTP port", or "any" for a rule without ports.
func (v Verdict) PortString() string {
	p := v.Port
	switch {
	case p.Protocol == 0:
		return "any"
	case p.Port == 0:
		return "every " + p.Protocol.String() + " port"
	case p.EndPort > p.Port:
		return fmt.Sprintf("%s %d-%d", p.Protocol, p.Port, p.EndPort)
	}
	return fmt.Sprintf("%s %d", p.Protocol, p.Port)
}

func (v Verdict) String() string {
	switch {
	case !v.Governed:
		return fmt.Sprintf("allow: %s (%s is governed by no applying policy)",
			ReasonNotGoverned, v.Direction)
	case v.Allowed:
		return fmt.Sprintf("allow: policy %s %s (peer %s, port %s; %s:%d)",
			v.Policy, v.Rule, v.PeerString(), v.PortString(), v.Source.File, v.Source.Line)
	}
	return fmt.Sprintf("deny: %s (%s is governed: default deny)", ReasonNoRule, v.Direction)
}

// Evaluate decides one packet by reading the policies of set that apply to
// a host with these labels directly, without compiling them. It is the
// reference: `check` prints it, and the tests compare both Compile and the
// eBPF datapath against it, so it stays a plain reading of the semantics
// (see the package documentation):
//
//   - a reply is judged as the packet that opened its flow, in the
//     opposite direction; a later fragment as its first fragment;
//   - a direction no applying policy governs allows everything;
//   - otherwise the packet is allowed when some rule of some applying
//     policy governing the direction has a peer containing the address
//     (and none of that peer's excepts does) and a port entry admitting
//     the protocol and port; a rule without peers admits every address, a
//     rule without ports every protocol and port. Only a rule without
//     ports admits ICMP and protocols other than TCP, UDP and SCTP.
func Evaluate(set *Set, hostLabels map[string]string, p Packet) Verdict {
	d := p.Direction
	if p.Reply {
		d = opposite(d)
	}
	port := p.Port
	if !hasPorts(p.Protocol) {
		port = 0
	}
	peer := p.Peer.WithZone("")

	v := Verdict{Direction: d}
	if set == nil {
		v.Allowed = true
		return v
	}
	for _, pol := range set.Applying(hostLabels) {
		if !pol.Governs(d) {
			continue
		}
		v.Governed = true
		for i, r := range pol.Rules(d) {
			cidr, ok := r.matchPeer(peer)
			if !ok {
				continue
			}
			pe, ok := r.matchPort(p.Protocol, port)
			if !ok {
				continue
			}
			v.Allowed = true
			v.Policy = pol.Key()
			v.Rule = fmt.Sprintf("spec.%s[%d]", d, i)
			v.Peer = cidr
			v.Port = pe
			v.Source = Source{File: pol.Source.File, Doc: pol.Source.Doc, Line: r.Line}
			return v
		}
	}
	v.Allowed = !v.Governed
	return v
}

// Evaluate is the package's Evaluate for a new, unfragmented packet: peer is
// the remote address and port the destination port (0 for protocols without
// ports).
func (s *Set) Evaluate(hostLabels map[string]string, d Direction, peer netip.Addr,
	proto uint8, port uint16) Verdict {
	return Evaluate(s, hostLabels, Packet{Direction: d, Peer: peer, Protocol: proto, Port: port})
}

func opposite(d Direction) Direction {
	if d == Egress {
		return Ingress
	}
	return Egress
}

// matchPeer returns the cidr of the first peer that admits a: the zero
// Prefix when the rule has no peers and so admits every address.
func (r *Rule) matchPeer(a netip.Addr) (netip.Prefix, bool) {
	if len(r.Peers) == 0 {
		return netip.Prefix{}, a.IsValid()
	}
	for _, p := range r.Peers {
		if p.matches(a) {
			return p.CIDR, true
		}
	}
	return netip.Prefix{}, false
}

func (r *Rule) matchesPeer(a netip.Addr) bool {
	_, ok := r.matchPeer(a)
	return ok
}

// matches: Prefix.Contains already keeps the families apart, including
// IPv4-mapped IPv6 addresses against IPv4 prefixes.
func (p *Peer) matches(a netip.Addr) bool {
	if !p.CIDR.Contains(a) {
		return false
	}
	for _, e := range p.Except {
		if e.Contains(a) {
			return false
		}
	}
	return true
}

// matchPort returns the first port entry that admits proto and port: the
// zero Port when the rule has no ports and so admits everything.
func (r *Rule) matchPort(proto uint8, port uint16) (Port, bool) {
	if len(r.Ports) == 0 {
		return Port{}, true
	}
	for _, p := range r.Ports {
		if uint8(p.Protocol) != proto {
			continue
		}
		if p.Port == 0 || (port >= p.Port && port <= max(p.EndPort, p.Port)) {
			return p, true
		}
	}
	return Port{}, false
}

func (r *Rule) matchesPort(proto uint8, port uint16) bool {
	_, ok := r.matchPort(proto, port)
	return ok
}
