package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/bench"
)

// The report judges each target on the medians, says by how much one is
// missed, names what was not measured, and lists every result.
func TestRenderJudgesTargetsOnMedians(t *testing.T) {
	rs := []bench.Result{
		{Suite: bench.SuiteVerdict, Name: "empty", Unit: "ns/packet", Runs: []float64{30, 40, 1000}, Method: "m1"},
		{Suite: bench.SuiteVerdict, Name: "ours", Params: map[string]string{"family": "ipv4", "flow": "established", "prefixes": "10000"},
			Unit: "ns/packet", Runs: []float64{70, 90, 100}, Method: "m1"},
		{Suite: bench.SuiteApply, Name: "compile, write and swap", Params: map[string]string{"prefixes": "100000"},
			Unit: "ms", Runs: []float64{900, 1200, 1300}, Method: "m2"},
		{Suite: bench.SuiteLab, Name: "udp64", Params: map[string]string{"config": "none"}, Unit: "packets/s", Runs: []float64{1, 2}, Method: "m3"},
		{Suite: bench.SuiteLab, Name: "udp64", Params: map[string]string{"config": "ours", "prefixes": "10000"}, Unit: "packets/s", Runs: []float64{1, 2}, Method: "m3"},
	}
	doc := render(rs, [][2]string{{"kernel", "test"}}, time.Unix(0, 0), []byte("## Analysis\n"))
	for _, want := range []string{
		// median 90 / median 40: 2.25x, over 2.0 by 0.25.
		"| Established flow (conntrack hit) vs the empty program, IPv4, 10,000 prefixes | 2.25x (90.0 ns/packet / 40.0 ns/packet) | at most 2.00x | **missed** by 0.25x (12% of the bound) |",
		// median 1200 ms against 1000.
		"| Compile, write and swap of 100,000 prefixes | 1200 ms | at most 1000 ms | **missed** by 200.0 ms (20% of the bound) |",
		"**not judged**: lab/udp64{config=ours,prefixes=10000} has 2 runs, fewer than the 8 asked for",
		"**not measured**: no result verdict/ours{family=ipv4,flow=new,prefixes=10000}",
		"| kernel | test |",
		"| empty [1] |  | 40.0 ns/packet | 30.0 ns/packet – 1000 ns/packet | 3 |",
		"## Analysis",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("report lacks %q:\n%s", want, doc)
		}
	}
	if strings.Contains(doc, "All 13 targets are met") {
		t.Error("the report says all targets are met")
	}
}
