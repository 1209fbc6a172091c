package policy

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The public space of an address family is where the internet's hosts
// are: the family's unicast space minus the special-purpose ranges no
// internet host has an address in. The exposure checks ask whether CDE
// peers cover all or nearly all of it (see "Findings" in the package
// documentation for the threshold and why).

// nonPublic is a range of a family's unicast space outside its public
// space, with why.
type nonPublic struct {
	prefix netip.Prefix
	what   string
}

// publicUniverse is the unicast space of each family that holds public
// addresses. IPv6 global unicast addresses are assigned only from
// 2000::/3 (RFC 4291 2.4, the IANA IPv6 Address Space registry); the rest
// of ::/0 — loopback, IPv4-mapped ::ffff:0:0/96, NAT64 64:ff9b::/96,
// discard 100::/64, ULA fc00::/7, link-local fe80::/10, multicast
// ff00::/8 — is special-purpose or unassigned.
var publicUniverse = [2]netip.Prefix{
	ipv4: netip.MustParsePrefix("0.0.0.0/0"),
	ipv6: netip.MustParsePrefix("2000::/3"),
}

// nonPublicRanges lists, per family, the ranges inside publicUniverse that
// are not public: those the IANA special-purpose address registries
// (RFC 6890) mark not globally reachable, with multicast and the IPv4
// reserved block. The few globally reachable anycast entries the registry
// carves out of 192.0.0.0/24 and 2001::/23 are left out with their block;
// they are far below the threshold.
var nonPublicRanges = [2][]nonPublic{
	ipv4: {
		{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (RFC 791)`},
		{netip.MustParsePrefix("10.0.0.0/8"), "private use (RFC 1918)"},
		{netip.MustParsePrefix("100.64.0.0/10"), "shared address space for carrier-grade NAT (RFC 6598)"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback (RFC 1122)"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local (RFC 3927)"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private use (RFC 1918)"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments (RFC 6890)"},
		{netip.MustParsePrefix("192.0.2.0/24"), "documentation, TEST-NET-1 (RFC 5737)"},
		{netip.MustParsePrefix("192.88.99.0/24"), "deprecated 6to4 relay anycast (RFC 7526)"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private use (RFC 1918)"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking (RFC 2544)"},
		{netip.MustParsePrefix("198.51.100.0/24"), "documentation, TEST-NET-2 (RFC 5737)"},
		{netip.MustParsePrefix("203.0.113.0/24"), "documentation, TEST-NET-3 (RFC 5737)"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast (RFC 5771)"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved, and limited broadcast (RFC 1112, RFC 919)"},
	},
	ipv6: {
		{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments (RFC 2928)"},
		{netip.MustParsePrefix("2001:db8::/32"), "documentation (RFC 3849)"},
		{netip.MustParsePrefix("3fff::/20"), "documentation (RFC 9637)"},
	},
}

// publicSpace is, per family, publicUniverse minus nonPublicRanges, as
// sorted, merged ranges.
var publicSpace = func() [2][]addrRange {
	var out [2][]addrRange
	for fam := range out {
		peer := Peer{CIDR: publicUniverse[fam]}
		for _, n := range nonPublicRanges[fam] {
			peer.Except = append(peer.Except, n.prefix)
		}
		out[fam] = peerRanges(peer)
	}
	return out
}()

// nearlyAll is, per family, how many public addresses peers may leave out
// and still count as covering nearly all of the public space: one block of
// the size IANA allocates to a regional internet registry, a /8 of IPv4
// and a /12 of IPv6. Either is under 0.5% of its family's public space.
var nearlyAll = [2]uint128{
	ipv4: {lo: 1 << 24},
	ipv6: {hi: 1 << (116 - 64)},
}

// uint128 counts addresses exactly; an IPv6 range can hold 2^128 of them
// (never in the public space, which is smaller than 2^125).
type uint128 struct{ hi, lo uint64 }

func addrUint128(a netip.Addr) uint128 {
	b := a.As16()
	return uint128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func (x uint128) add(y uint128) uint128 {
	lo, carry := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, carry)
	return uint128{hi, lo}
}

func (x uint128) greater(y uint128) bool {
	return x.hi > y.hi || x.hi == y.hi && x.lo > y.lo
}

// count is the number of addresses in r.
func (r addrRange) count() uint128 {
	hi, lo := addrUint128(r.hi), addrUint128(r.lo)
	dlo, borrow := bits.Sub64(hi.lo, lo.lo, 0)
	dhi, _ := bits.Sub64(hi.hi, lo.hi, borrow)
	return uint128{dhi, dlo}.add(uint128{lo: 1})
}

// coversPublic reports whether ranges of family fam, in any order, leave
// out of its public space at most slack addresses.
func coversPublic(rs []addrRange, fam int, slack uint128) bool {
	rs = mergeRanges(rs)
	var gap uint128
	j := 0
	for _, p := range publicSpace[fam] {
		for j < len(rs) && rs[j].hi.Less(p.lo) {
			j++
		}
		cur, done := p.lo, false
		for k := j; k < len(rs) && rs[k].lo.Compare(p.hi) <= 0; k++ {
			if rs[k].lo.Compare(cur) > 0 {
				gap = gap.add(addrRange{cur, rs[k].lo.Prev()}.count())
			}
			if rs[k].hi.Compare(p.hi) >= 0 {
				done = true
				break
			}
			cur = rs[k].hi.Next()
		}
		if !done {
			gap = gap.add(addrRange{cur, p.hi}.count())
		}
		if gap.greater(slack) {
			return false
		}
	}
	return true
}
