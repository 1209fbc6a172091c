package policy

import (
	"fmt"
	"net/netip"
)

// Verdict is the reference evaluator's answer for one packet.
type Verdict struct {
	Allowed bool
	// Governed is false when no applying policy governs the direction; the
	// packet is then allowed without any rule.
	Governed bool
	// Policy, Rule (a field path such as "spec.ingress[1]") and Source name
	// the first rule, in policy key order, that allows the packet; empty
	// when the packet is denied or the direction is not governed.
	Policy string
	Rule   string
	Source Source
}

func (v Verdict) String() string {
	switch {
	case !v.Governed:
		return "allow: direction governed by no applying policy"
	case v.Allowed:
		return fmt.Sprintf("allow: policy %s %s (%s:%d)", v.Policy, v.Rule, v.Source.File, v.Source.Line)
	}
	return "deny: no rule of an applying policy allows it (default deny)"
}

// Evaluate decides one packet by reading the policies directly, without
// compiling them: it is the reference `check` prints and the tests compare
// Compile against, so it must stay a plain reading of the semantics.
//
// peer is the remote address (the source for Ingress, the destination for
// Egress) as it appears in the packet: an IPv4 packet's address is IPv4, an
// IPv4-mapped IPv6 address is IPv6 and only IPv6 prefixes match it. port is
// the destination port, 0 for protocols without ports.
func (s *Set) Evaluate(hostLabels map[string]string, d Direction, peer netip.Addr, proto uint8, port uint16) Verdict {
	peer = peer.WithZone("")
	var v Verdict
	for _, p := range s.Applying(hostLabels) {
		if !p.Governs(d) {
			continue
		}
		v.Governed = true
		for i, r := range p.Rules(d) {
			if r.matchesPeer(peer) && r.matchesPort(proto, port) {
				return Verdict{
					Allowed: true, Governed: true, Policy: p.Key(),
					Rule:   fmt.Sprintf("spec.%s[%d]", d, i),
					Source: Source{File: p.Source.File, Doc: p.Source.Doc, Line: r.Line},
				}
			}
		}
	}
	v.Allowed = !v.Governed
	return v
}

func (r *Rule) matchesPeer(a netip.Addr) bool {
	if len(r.Peers) == 0 {
		return a.IsValid()
	}
	for _, p := range r.Peers {
		if p.matches(a) {
			return true
		}
	}
	return false
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

func (r *Rule) matchesPort(proto uint8, port uint16) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, p := range r.Ports {
		if uint8(p.Protocol) != proto {
			continue
		}
		if p.Port == 0 || (port >= p.Port && port <= max(p.EndPort, p.Port)) {
			return true
		}
	}
	return false
}
