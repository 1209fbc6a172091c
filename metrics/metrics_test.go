package metrics

import (
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/testenv"
)

// counters creates a real per-CPU counter map with the datapath's definition.
func counters(t *testing.T) *ebpf.Map {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := bpf.Spec()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(spec.Maps[bpf.DatapathMapCounters])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestRegistryPassesLint(t *testing.T) {
	m := New(counters(t))
	problems, err := testutil.GatherAndLint(m.Registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestPacketCountersSumOverCPUs(t *testing.T) {
	c := counters(t)
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	per := make([]bpf.DatapathCounter, n)
	for i := range per {
		per[i] = bpf.DatapathCounter{Packets: 2, Bytes: 100}
	}
	if err := c.Put(bpf.CounterVerdict(bpf.DirEgress, true), per); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(bpf.CounterMonitor(bpf.DirIngress), per); err != nil {
		t.Fatal(err)
	}
	m := New(c)
	want := strings.NewReader(strings.ReplaceAll(`
# HELP pci_segment_packets_total Packets judged by the datapath, by direction and verdict: allow, deny, or would_deny (denied by the policy and passed: monitor mode).
# TYPE pci_segment_packets_total counter
pci_segment_packets_total{direction="egress",verdict="allow"} 0
pci_segment_packets_total{direction="egress",verdict="deny"} N
pci_segment_packets_total{direction="egress",verdict="would_deny"} 0
pci_segment_packets_total{direction="ingress",verdict="allow"} 0
pci_segment_packets_total{direction="ingress",verdict="deny"} 0
pci_segment_packets_total{direction="ingress",verdict="would_deny"} N
`, "N", strconv.Itoa(2*n)))
	if err := testutil.GatherAndCompare(m.Registry, want, "pci_segment_packets_total"); err != nil {
		t.Error(err)
	}
}
