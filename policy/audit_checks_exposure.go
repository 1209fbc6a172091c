package policy

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The exposure checks (cde-open-*, cde-public-*) ask, per CDE host,
// direction and address family, which ports the peers of every applying
// rule together open to the whole family, and which to all or nearly all
// of its public space (audit_public_space.go). Addresses are handled as
// sorted ranges, so the answer depends on the address space covered, never
// on how the cidrs are written.

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// Address families, as indexes.
const (
	ipv4 = 0
	ipv6 = 1
)

var familyNames = [2]string{"IPv4", "IPv6"}

func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return ipv4
	}
	return ipv6 // IPv4-mapped IPv6 included
}

func wholeFamily(fam int) addrRange {
	if fam == ipv4 {
		return addrRange{netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	}
	var last [16]byte
	for i := range last {
		last[i] = 0xff
	}
	return addrRange{netip.IPv6Unspecified(), netip.AddrFrom16(last)}
}

// prefixRange is the range of a prefix. An IPv4-mapped prefix stays IPv6.
func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := range b {
		switch start := i * 8; {
		case start >= p.Bits():
			b[i] = 0xff
		case start+8 > p.Bits():
			b[i] |= 0xff >> (p.Bits() - start)
		}
	}
	hi, _ := netip.AddrFromSlice(b)
	return addrRange{p.Addr(), hi}
}

// mergeRanges sorts ranges of one family and joins the overlapping and
// adjacent ones.
func mergeRanges(rs []addrRange) []addrRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(x, y addrRange) int { return x.lo.Compare(y.lo) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if next := last.hi.Next(); !next.IsValid() || r.lo.Compare(next) <= 0 {
				if r.hi.Compare(last.hi) > 0 {
					last.hi = r.hi
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// peerRanges is what a peer admits: its cidr minus its excepts.
func peerRanges(p Peer) []addrRange {
	cidr := prefixRange(p.CIDR)
	var cut []addrRange
	for _, e := range p.Except {
		cut = append(cut, prefixRange(e))
	}
	var out []addrRange
	cur := cidr.lo
	for _, c := range mergeRanges(cut) { // inside cidr, by the parser's checks
		if c.lo.Compare(cur) > 0 {
			out = append(out, addrRange{cur, c.lo.Prev()})
		}
		if cur = c.hi.Next(); !cur.IsValid() || c.hi == cidr.hi {
			return out
		}
	}
	return append(out, addrRange{cur, cidr.hi})
}

// covers reports whether ranges of family fam, in any order, cover it.
func covers(rs []addrRange, fam int) bool {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(x, y addrRange) int { return x.lo.Compare(y.lo) })
	whole := wholeFamily(fam)
	cur := whole.lo
	for _, r := range rs {
		if r.lo.Compare(cur) > 0 {
			return false
		}
		if r.hi.Compare(cur) >= 0 {
			if r.hi == whole.hi {
				return true
			}
			cur = r.hi.Next()
		}
	}
	return false
}

// size is the number of addresses in ranges, roughly: it only orders rules.
func size(rs []addrRange) float64 {
	f := func(a netip.Addr) float64 {
		b := a.As16()
		return float64(binary.BigEndian.Uint64(b[:8]))*0x1p64 + float64(binary.BigEndian.Uint64(b[8:]))
	}
	var n float64
	for _, r := range rs {
		n += f(r.hi) - f(r.lo) + 1
	}
	return n
}

type ruleID struct {
	pol *Policy
	dir Direction
	idx int
}

// auditRule is a rule as the exposure checks see it, computed once.
type auditRule struct {
	ruleID
	rule     *Rule
	addrs    [2][]addrRange // per family, merged
	size     [2]float64
	whole    [2]bool // admits every address of the family by itself
	anyProto bool    // no ports: every port of every protocol
	ports    [len(portProtocols)][]portRange
	ordinal  int // position in the set, for a stable order
}

func (a *auditor) rule(p *Policy, d Direction, i int) *auditRule {
	id := ruleID{p, d, i}
	if r, ok := a.rules[id]; ok {
		return r
	}
	r := &auditRule{ruleID: id, rule: &p.Rules(d)[i], ordinal: len(a.rules)}
	if len(r.rule.Peers) == 0 {
		r.addrs = [2][]addrRange{{wholeFamily(ipv4)}, {wholeFamily(ipv6)}}
	} else {
		for _, peer := range r.rule.Peers {
			fam := familyIndex(peer.CIDR.Addr())
			r.addrs[fam] = append(r.addrs[fam], peerRanges(peer)...)
		}
	}
	for fam := range r.addrs {
		r.addrs[fam] = mergeRanges(r.addrs[fam])
		r.size[fam] = size(r.addrs[fam])
		r.whole[fam] = covers(r.addrs[fam], fam)
	}
	r.anyProto, r.ports = rulePorts(r.rule)
	a.rules[id] = r
	return r
}

// field names the rule's peers, or the rule when it has none.
func (r *auditRule) field() string {
	path := fmt.Sprintf("spec.%s[%d]", r.dir, r.idx)
	if len(r.rule.Peers) == 0 {
		return path
	}
	if r.dir == Egress {
		return path + ".to"
	}
	return path + ".from"
}

// space is the addresses an exposure is judged against.
type space uint8

const (
	spaceFamily       space = iota // every address of the family
	spacePublic                    // every public address (audit_public_space.go)
	spaceNearlyPublic              // all but at most nearlyAll public addresses
)

// spaces are the spaces a finding can claim, the strongest claim first.
// Each covers less than the one before, so rules exposing a port to one
// expose it to every later one.
var spaces = [...]space{spaceFamily, spacePublic, spaceNearlyPublic}

// covered reports whether ranges of family fam, in any order, cover s.
func (s space) covered(rs []addrRange, fam int) bool {
	switch s {
	case spacePublic:
		return coversPublic(rs, fam, uint128{})
	case spaceNearlyPublic:
		return coversPublic(rs, fam, nearlyAll[fam])
	}
	return covers(rs, fam)
}

// addresses says what an exposure of s reaches, with a %s for the
// families.
func (s space) addresses() string {
	switch s {
	case spacePublic:
		return "every public %s address"
	case spaceNearlyPublic:
		return "nearly every public %s address"
	}
	return "every %s address"
}

// exposed is what a set of rules opens to a space of an address family.
type exposed struct {
	anyProto bool                            // every port of every protocol
	every    [len(portProtocols)]bool        // every port of a protocol
	ports    [len(portProtocols)][]portRange // the ports open to the space
}

func (e *exposed) open() bool { return e.anyProto || slices.Contains(e.every[:], true) }

func (e *exposed) public() bool {
	return slices.ContainsFunc(e.ports[:], func(p []portRange) bool { return len(p) > 0 })
}

// sameOpen reports whether e and f open every port of the same protocols.
func (e *exposed) sameOpen(f exposed) bool { return e.anyProto == f.anyProto && e.every == f.every }

// exposure computes what rules open to space sp of family fam. Per
// protocol it sweeps 1-65535, cut at every range boundary of the rules,
// keeping the set of rules admitting the current piece, and asks whether
// they cover the space each time that set changes. A protocol whose rules
// together do not cover the space at all costs one pass over its ranges.
func exposure(rules []*auditRule, fam int, sp space) exposed {
	var e exposed
	var anyProto []addrRange
	for _, r := range rules {
		if r.anyProto {
			anyProto = append(anyProto, r.addrs[fam]...)
		}
	}
	e.anyProto = sp.covered(anyProto, fam)
	type event struct {
		at  int // a port, or 65536 past the last
		add bool
		r   *auditRule
	}
	for pi := range portProtocols {
		var addrs []addrRange
		var events []event
		for _, r := range rules {
			if len(r.ports[pi]) == 0 {
				continue
			}
			addrs = append(addrs, r.addrs[fam]...)
			for _, pr := range r.ports[pi] {
				events = append(events, event{int(pr.lo), true, r}, event{int(pr.hi) + 1, false, r})
			}
		}
		if !sp.covered(addrs, fam) {
			continue
		}
		slices.SortFunc(events, func(x, y event) int { return cmp.Compare(x.at, y.at) })
		active := make(map[*auditRule]bool)
		for i := 0; i < len(events); {
			at := events[i].at
			for ; i < len(events) && events[i].at == at; i++ {
				if events[i].add {
					active[events[i].r] = true
				} else {
					delete(active, events[i].r)
				}
			}
			if at <= 65535 && coveredBy(active, fam, sp) {
				next := 65536
				if i < len(events) {
					next = events[i].at
				}
				e.ports[pi] = append(e.ports[pi], portRange{uint16(at), uint16(next - 1)})
			}
		}
		e.ports[pi] = mergePorts(e.ports[pi])
		e.every[pi] = len(e.ports[pi]) == 1 && e.ports[pi][0] == everyPort
	}
	return e
}

// coveredBy reports whether the rules together cover space sp of fam.
func coveredBy(rules map[*auditRule]bool, fam int, sp space) bool {
	var rs []addrRange
	for r := range rules {
		if r.whole[fam] {
			return true
		}
		rs = append(rs, r.addrs[fam]...)
	}
	return sp.covered(rs, fam)
}

// subtractPorts is the ports of a not in b; both merged.
func subtractPorts(a, b []portRange) []portRange {
	var out []portRange
	for _, r := range a {
		lo := uint32(r.lo)
		for _, c := range b {
			if uint32(c.hi) < lo || c.lo > r.hi {
				continue
			}
			if uint32(c.lo) > lo {
				out = append(out, portRange{uint16(lo), c.lo - 1})
			}
			lo = uint32(c.hi) + 1
		}
		if lo <= uint32(r.hi) {
			out = append(out, portRange{uint16(lo), r.hi})
		}
	}
	return out
}

// cdeHost is a host of the cardholder data environment the audit judges:
// the host --labels names (named), or one inferred from a selector, which
// carries exactly that selector's labels. selector is then the first
// policy with that selector, where findings about the host point.
type cdeHost struct {
	labels   map[string]string
	named    bool
	selector *Policy
}

// cdeHosts are the CDE hosts the set describes: the host --labels names
// when it is one, and for each selector requiring pci-env: cde the host
// carrying exactly its labels, each once. An inferred host is the one
// its selector selects that gets the fewest policies.
func (a *auditor) cdeHosts() []cdeHost {
	var hosts []cdeHost
	seen := make(map[string]bool)
	if a.labels["pci-env"] == "cde" {
		seen[FormatLabels(a.labels)] = true
		hosts = append(hosts, cdeHost{labels: a.labels, named: true})
	}
	for _, p := range a.set.Policies {
		sel := p.Spec.PodSelector.MatchLabels
		if k := FormatLabels(sel); sel["pci-env"] == "cde" && !seen[k] {
			seen[k] = true
			hosts = append(hosts, cdeHost{labels: sel, selector: p})
		}
	}
	return hosts
}

// exposureFinding is one family's result before the families are merged.
type exposureFinding struct {
	check check
	rules []*auditRule // the first is where the finding points
	addrs string       // space.addresses: "every %s address", ...
	what  string       // "on every TCP port", "on TCP 443"
}

// exposure judges one CDE host, each direction and family, and adds the
// findings not already made for another host.
func (a *auditor) exposure(host map[string]string) {
	applying := a.set.Applying(host)
	for _, d := range directions {
		var rules []*auditRule
		for _, p := range applying {
			if p.Governs(d) {
				for i := range p.Rules(d) {
					rules = append(rules, a.rule(p, d, i))
				}
			}
		}
		var found [2]*exposureFinding
		for fam := range found {
			found[fam] = judge(rules, d, fam)
		}
		if f4, f6 := found[ipv4], found[ipv6]; f4 != nil && f6 != nil && f4.check == f6.check &&
			f4.addrs == f6.addrs && f4.what == f6.what && slices.Equal(f4.rules, f6.rules) {
			a.emit(d, "IPv4 and IPv6", f4)
			continue
		}
		for fam, f := range found {
			if f != nil {
				a.emit(d, familyNames[fam], f)
			}
		}
	}
}

// judge returns what the rules of direction d open to family fam, if
// anything is worth a finding. Whether there is one is decided on the
// loosest space, nearly all of the public addresses; the finding then
// claims the strongest space it still holds for (spaces), so 0.0.0.0/0
// reads "every IPv4 address", 0.0.0.0/0 except 10.0.0.0/8 "every public
// IPv4 address".
func judge(rules []*auditRule, d Direction, fam int) *exposureFinding {
	var cands []*auditRule
	for _, r := range rules {
		if r.size[fam] > 0 {
			cands = append(cands, r)
		}
	}
	loose := exposure(cands, fam, spaceNearlyPublic)
	if loose.open() {
		opens := func(sp space) func([]*auditRule) bool {
			return func(rs []*auditRule) bool {
				e := exposure(rs, fam, sp)
				return e.sameOpen(loose)
			}
		}
		sp := strongest(func(sp space) bool { return opens(sp)(cands) })
		return &exposureFinding{
			check: byDirection(d, checkOpenIngress, checkOpenEgress),
			rules: fewest(nil, widestFirst(cands, fam), opens(sp)),
			addrs: sp.addresses(),
			what:  describeOpen(loose),
		}
	}
	if !loose.public() {
		return nil
	}
	var just, unjust []*auditRule
	for _, r := range cands {
		if justified(r.pol) {
			just = append(just, r)
		} else {
			unjust = append(unjust, r)
		}
	}
	// unjustified is, per protocol, the ports the rules open to sp that
	// the justified policies alone do not.
	unjustified := func(sp space) (t [len(portProtocols)][]portRange) {
		all, byJust := exposure(cands, fam, sp), exposure(just, fam, sp)
		for pi := range t {
			t[pi] = subtractPorts(all.ports[pi], byJust.ports[pi])
		}
		return t
	}
	target := unjustified(spaceNearlyPublic)
	if !slices.ContainsFunc(target[:], func(p []portRange) bool { return len(p) > 0 }) {
		return nil // every public port is a justified public service
	}
	sp := strongest(func(sp space) bool {
		t := unjustified(sp)
		return slices.EqualFunc(t[:], target[:], slices.Equal)
	})
	reaches := func(rs []*auditRule) bool {
		e := exposure(rs, fam, sp)
		for pi := range target {
			if len(subtractPorts(target[pi], e.ports[pi])) > 0 {
				return false
			}
		}
		return true
	}
	// The rules without a justification that take part, widest first, and
	// then the justified ones they need.
	blame := fewest(just, widestFirst(unjust, fam), reaches)
	blame = append(blame, fewest(blame, widestFirst(just, fam), reaches)...)
	return &exposureFinding{
		check: byDirection(d, checkPublicIngress, checkPublicEgress),
		rules: blame,
		addrs: sp.addresses(),
		what:  "on " + describePorts(target),
	}
}

// strongest is the first of spaces for which holds is true; it must hold
// for the last.
func strongest(holds func(space) bool) space {
	for _, sp := range spaces[:len(spaces)-1] {
		if holds(sp) {
			return sp
		}
	}
	return spaces[len(spaces)-1]
}

// widestFirst orders rules by the addresses of fam they admit, then by the
// ports, then as in the set: the rule a finding points at is the one that
// opens the most.
func widestFirst(rules []*auditRule, fam int) []*auditRule {
	out := slices.Clone(rules)
	ports := func(r *auditRule) int {
		if r.anyProto {
			return 1 << 30
		}
		n := 0
		for _, rs := range r.ports {
			for _, pr := range rs {
				n += int(pr.hi-pr.lo) + 1
			}
		}
		return n
	}
	slices.SortStableFunc(out, func(x, y *auditRule) int {
		return cmp.Or(cmp.Compare(y.size[fam], x.size[fam]), cmp.Compare(ports(y), ports(x)),
			cmp.Compare(x.ordinal, y.ordinal))
	})
	return out
}

// fewest returns the shortest prefix of order that, with base, satisfies
// ok, which must hold for base with all of order and stay true as rules
// are added (more rules never admit less). It gallops before it bisects:
// the answer is usually the first rule or two, and each try costs a pass
// over the rules tried.
func fewest(base, order []*auditRule, ok func([]*auditRule) bool) []*auditRule {
	with := func(n int) []*auditRule { return append(slices.Clone(base), order[:n]...) }
	lo, hi := 0, len(order) // ok(with(hi)); !ok(with(n)) for n < lo
	for n := 1; n < hi; n *= 2 {
		if ok(with(n)) {
			hi = n
			break
		}
		lo = n + 1
	}
	for lo < hi {
		if mid := (lo + hi) / 2; ok(with(mid)) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return order[:lo]
}

func describeOpen(e exposed) string {
	if e.anyProto {
		return "on every port of every protocol"
	}
	var names []string
	for pi, every := range e.every {
		if every {
			names = append(names, portProtocols[pi].String())
		}
	}
	return "on every " + joinAnd(names) + " port"
}

// describePorts writes ports per protocol, "TCP 443, 8443; UDP 53", giving
// at most a few ranges.
func describePorts(ports [len(portProtocols)][]portRange) string {
	const shown = 8
	var parts []string
	n, more := 0, 0
	for pi, rs := range ports {
		var s []string
		for _, r := range rs {
			if n == shown {
				more++
				continue
			}
			s = append(s, r.String())
			n++
		}
		if len(s) > 0 {
			parts = append(parts, portProtocols[pi].String()+" "+strings.Join(s, ", "))
		}
	}
	out := strings.Join(parts, "; ")
	if more > 0 {
		out += fmt.Sprintf(" and %d more port ranges", more)
	}
	return out
}

func joinAnd(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// emit turns a judged exposure into a finding at its widest rule.
func (a *auditor) emit(d Direction, families string, f *exposureFinding) {
	first := f.rules[0]
	var others []string
	for i, r := range f.rules[1:] {
		if i == 3 {
			others = append(others, fmt.Sprintf("%d more", len(f.rules)-4))
			break
		}
		src := r.pol.Source
		line := a.lines.line(src.File, src.Doc, r.field(), r.rule.Line)
		others = append(others, fmt.Sprintf("%s %s (%s:%d)", r.pol.Key(), r.field(), src.File, line))
	}
	how := " through these peers"
	switch {
	case len(others) > 0:
		how += " together with " + joinAnd(others)
	case len(first.rule.Peers) == 0:
		how = fmt.Sprintf(" through this rule, which has no %q and so admits every peer", peerKey(d))
	}
	verb, need := "admits", "the peers that need to reach the CDE, on the ports they need"
	if d == Egress {
		verb, need = "reaches", "the peers the CDE needs to reach, on the ports it needs"
	}
	addrs := fmt.Sprintf(f.addrs, families)
	var msg string
	if f.check.level == LevelError {
		msg = fmt.Sprintf("CDE %s %s %s %s%s; list only %s",
			d, verb, addrs, f.what, how, need)
	} else {
		msg = fmt.Sprintf("CDE %s %s %s %s%s, as a public service would; if that is intended, "+
			"record why in a %s annotation, otherwise list only %s",
			d, verb, addrs, f.what, how, JustificationAnnotation, need)
	}
	key := f.check.name + "\x00" + first.field() + "\x00" + first.pol.Key() + "\x00" + msg
	if a.seen[key] {
		return
	}
	a.seen[key] = true
	a.add(a.at(f.check, first.pol, first.field(), first.rule.Line, "%s", msg))
}

func peerKey(d Direction) string {
	if d == Egress {
		return "to"
	}
	return "from"
}
