package policy

import (
	"math/rand/v2"
	"net/netip"
)

// Synthetic builds one policy with n peer prefixes, a tenth of them carrying an
// except (which counts as a prefix), in rules of 100 peers, half ingress and
// half egress. Mostly hosts and small networks, as allowlists are; with
// overlapping, a third are /16 to /20 networks, so most addresses are
// covered by several rules and nearly every boundary is a new class. It is
// the shape the capacity tests and benchmarks measure; the same n and seed
// always give the same set.
func Synthetic(n int, seed uint64, overlapping bool) *Set {
	rng := rand.New(rand.NewPCG(seed, seed))
	p := &Policy{APIVersion: APIVersion, Kind: Kind}
	p.Metadata.Name = "big"
	p.Spec.PolicyTypes = []Direction{Ingress, Egress}
	v4 := func(bits int) netip.Prefix {
		a := [4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		return netip.PrefixFrom(netip.AddrFrom4(a), bits).Masked()
	}
	for i := 0; i < n; {
		var r Rule
		for j := 0; j < 100 && i < n; j++ {
			var peer Peer
			switch x := rng.IntN(100); {
			case overlapping && x < 33:
				peer.CIDR = v4(16 + rng.IntN(5))
			case x < 5:
				a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
				peer.CIDR = netip.PrefixFrom(netip.AddrFrom16(a), 48+rng.IntN(81)).Masked()
			case x < 10:
				peer.CIDR = v4(16 + rng.IntN(8))
			case x < 25:
				peer.CIDR = v4(24 + rng.IntN(8))
			default:
				peer.CIDR = v4(32)
			}
			i++
			if i < n && rng.IntN(10) == 0 && peer.CIDR.Bits() < peer.CIDR.Addr().BitLen() {
				peer.Except = []netip.Prefix{netip.PrefixFrom(peer.CIDR.Addr(), peer.CIDR.Bits()+1)}
				i++
			}
			r.Peers = append(r.Peers, peer)
		}
		r.Ports = []Port{{Protocol: TCP, Port: uint16(1 + rng.IntN(1024))}}
		if rng.IntN(2) == 0 {
			r.Ports = append(r.Ports, Port{Protocol: UDP, Port: 5000, EndPort: uint16(5000 + rng.IntN(100))})
		}
		if len(p.Spec.Ingress) <= len(p.Spec.Egress) {
			p.Spec.Ingress = append(p.Spec.Ingress, r)
		} else {
			p.Spec.Egress = append(p.Spec.Egress, r)
		}
	}
	return &Set{Policies: []*Policy{p}}
}
