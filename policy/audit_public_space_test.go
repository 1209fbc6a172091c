package policy

import (
	"net/netip"
	"slices"
	"testing"
)

func TestPublicSpaceHoldsTheInternetsAddresses(t *testing.T) {
	// publicSpace is built with peerRanges, which needs each range cut out
	// to be a strict subset of its universe, as an except is of its cidr.
	for fam, ranges := range nonPublicRanges {
		u := publicUniverse[fam]
		for _, n := range ranges {
			if n.prefix != n.prefix.Masked() || n.prefix.Bits() <= u.Bits() || !u.Contains(n.prefix.Addr()) {
				t.Errorf("%v (%s) is not a prefix strictly inside %v", n.prefix, n.what, u)
			}
		}
	}
	public := func(a netip.Addr) bool {
		return slices.ContainsFunc(publicSpace[familyIndex(a)], func(r addrRange) bool {
			return r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0
		})
	}
	for _, tt := range []struct {
		addr   string
		public bool
	}{
		{"1.0.0.0", true}, {"8.8.8.8", true}, {"9.255.255.255", true}, {"11.0.0.0", true},
		{"100.63.255.255", true}, {"100.128.0.0", true}, {"172.32.0.0", true}, {"198.20.0.0", true},
		{"223.255.255.255", true},
		{"0.1.2.3", false}, {"10.1.2.3", false}, {"100.64.0.1", false}, {"127.0.0.1", false},
		{"169.254.1.1", false}, {"172.31.255.255", false}, {"192.0.0.8", false}, {"192.0.2.1", false},
		{"192.88.99.1", false}, {"192.168.1.1", false}, {"198.19.255.255", false}, {"198.51.100.1", false},
		{"203.0.113.1", false}, {"224.0.0.1", false}, {"255.255.255.255", false},
		{"2001:200::1", true}, {"2606:4700::1111", true}, {"2a00::1", true}, {"3fff:1000::", true},
		{"2001:0:1::1", false}, {"2001:db8::1", false}, {"3fff::1", false}, {"4000::1", false},
		{"::1", false}, {"::ffff:8.8.8.8", false}, {"64:ff9b::808:808", false}, {"fc00::1", false},
		{"fe80::1", false}, {"ff02::1", false},
	} {
		if got := public(netip.MustParseAddr(tt.addr)); got != tt.public {
			t.Errorf("%s: public %v, want %v", tt.addr, got, tt.public)
		}
	}
}

func TestCoversPublicAllowsAtMostItsSlack(t *testing.T) {
	peer := func(cidr string, except ...string) []addrRange {
		p := Peer{CIDR: netip.MustParsePrefix(cidr)}
		for _, e := range except {
			p.Except = append(p.Except, netip.MustParsePrefix(e))
		}
		return peerRanges(p)
	}
	reversed := func(rs []addrRange) []addrRange { rs = slices.Clone(rs); slices.Reverse(rs); return rs }
	for _, tt := range []struct {
		name        string
		ranges      []addrRange
		fam         int
		all, nearly bool // with no slack, with nearlyAll
	}{
		{"the public space itself", publicSpace[ipv4], ipv4, true, true},
		{"the whole family", peer("0.0.0.0/0"), ipv4, true, true},
		{"in any order", reversed(peer("0.0.0.0/0", "8.8.8.8/32", "10.0.0.0/8")), ipv4, false, true},
		{"less private space", peer("0.0.0.0/0", "10.0.0.0/8", "192.168.0.0/16"), ipv4, true, true},
		{"less one public address", peer("0.0.0.0/0", "8.8.8.8/32"), ipv4, false, true},
		{"less a /8", peer("0.0.0.0/0", "8.0.0.0/8"), ipv4, false, true},
		{"less a /8 and one address", peer("0.0.0.0/0", "8.0.0.0/8", "9.0.0.0/32"), ipv4, false, false},
		{"less a /9 in each of two public blocks", peer("0.0.0.0/0", "8.0.0.0/9", "11.0.0.0/9"), ipv4, false, true},
		{"and one address more", peer("0.0.0.0/0", "8.0.0.0/9", "11.0.0.0/9", "203.0.114.0/32"), ipv4, false, false},
		{"half", peer("0.0.0.0/1"), ipv4, false, false},
		{"nothing", nil, ipv4, false, false},
		{"2000::/3", peer("2000::/3"), ipv6, true, true},
		{"the whole of IPv6", peer("::/0"), ipv6, true, true},
		{"2000::/3 less a /12", peer("2000::/3", "2400::/12"), ipv6, false, true},
		{"2000::/3 less a /11", peer("2000::/3", "2400::/11"), ipv6, false, false},
		{"IPv6 outside 2000::/3", append(peer("fc00::/7"), peer("::/3")...), ipv6, false, false},
	} {
		if got := coversPublic(tt.ranges, tt.fam, uint128{}); got != tt.all {
			t.Errorf("%s: covers all of the public space %v, want %v", tt.name, got, tt.all)
		}
		if got := coversPublic(tt.ranges, tt.fam, nearlyAll[tt.fam]); got != tt.nearly {
			t.Errorf("%s: covers nearly all of it %v, want %v", tt.name, got, tt.nearly)
		}
	}
}
