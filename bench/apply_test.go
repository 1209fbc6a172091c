package bench

import (
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// BenchmarkApply is the policy apply latency the worker pays on each
// reload, in its steps: parse (YAML to policies), then compile, write and
// swap (the inactive half cleared and written, the grace period, the
// selector flipped), measured apart and together, at 1,000, 10,000 and
// 100,000 prefixes, on a datapath of the default sizes (not attached:
// writing the maps costs the same). Each size replaces a set of its own
// size, as a reload that changes a few rules does: both halves are filled
// before the runs, since clearing the half a larger set left is the
// larger set's cost.
func BenchmarkApply(b *testing.B) {
	testenv.RequireRoot(b)
	objs, err := bpf.LoadWithSizes(bpf.DefaultSizes)
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	pm := datapath.Writer(objs.All())
	sizes := []int{1_000, 10_000, 100_000}
	const runs = 9
	type series struct{ parse, compile, write, total []float64 }
	got := map[int]*series{}
	gen := uint64(1)
	peer := netip.MustParsePrefix("10.77.1.0/24")
	for _, n := range sizes {
		s := &series{}
		got[n] = s
		for i := range runs + 2 {
			yaml := Allowlist(n, false, peer)
			t0 := time.Now()
			pols, err := policy.Parse("bench.yaml", yaml)
			if err != nil {
				b.Fatal(err)
			}
			set := &policy.Set{Policies: pols}
			t1 := time.Now()
			c, err := policy.Compile(set, nil)
			if err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			if err := pm.Apply(c, gen, set.Hash); err != nil {
				b.Fatal(err)
			}
			t3 := time.Now()
			gen++
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			if i < 2 {
				continue // both halves now hold a set of this size
			}
			s.parse = append(s.parse, ms(t1.Sub(t0)))
			s.compile = append(s.compile, ms(t2.Sub(t1)))
			s.write = append(s.write, ms(t3.Sub(t2)))
			s.total = append(s.total, ms(t3.Sub(t1)))
		}
	}
	var rs []Result
	for _, n := range sizes {
		p := map[string]string{"prefixes": strconv.Itoa(n)}
		method := "wall clock in one process, " + strconv.Itoa(runs) + " runs per size after two that fill both halves, default map sizes"
		s := got[n]
		rs = append(rs,
			Result{Suite: SuiteApply, Name: "parse", Params: p, Unit: "ms", Runs: s.parse, Method: method + "; policy.Parse of the YAML"},
			Result{Suite: SuiteApply, Name: "compile", Params: p, Unit: "ms", Runs: s.compile, Method: method + "; policy.Compile"},
			Result{Suite: SuiteApply, Name: "write and swap", Params: p, Unit: "ms", Runs: s.write, Method: method + "; datapath Apply: inactive half, barrier, selector"},
			Result{Suite: SuiteApply, Name: "compile, write and swap", Params: p, Unit: "ms", Runs: s.total, Method: method},
		)
	}
	Record(b, "apply", rs...)
}
