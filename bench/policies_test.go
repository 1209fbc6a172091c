package bench

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/pci-segment/pci-segment/policy"
)

// The benchmark set is valid, holds exactly n disjoint prefixes, and
// compiles to one class that allows the peer: a size benchmarked is the
// size named.
func TestAllowlistIsValidAndOfItsSize(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		peer := netip.MustParsePrefix("10.77.1.0/24")
		if v6 {
			peer = netip.MustParsePrefix("fd00:77:1::/64")
		}
		for _, n := range []int{10, 10_000, 100_000} {
			pols, err := policy.Parse("bench.yaml", Allowlist(n, v6, peer))
			if err != nil {
				t.Fatalf("v6 %v n %d: %v", v6, n, err)
			}
			c, err := policy.Compile(&policy.Set{Policies: pols}, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Sorted, disjoint prefixes never overlap their neighbour.
			ps := Prefixes(n, v6, peer)
			slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
			for i := 1; i < len(ps); i++ {
				if ps[i-1].Overlaps(ps[i]) {
					t.Fatalf("%s overlaps %s", ps[i-1], ps[i])
				}
			}
			if len(Prefixes(n, v6, peer)) != n || c.Rules != (n+99)/100 {
				t.Errorf("v6 %v n %d: %d prefixes, %d rules", v6, n, len(Prefixes(n, v6, peer)), c.Rules)
			}
		}
	}
}
