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
	// Every collector with something to say: the datapath's maps, a
	// policy, an interface, an override.
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	m := New(objs.Counters, objs.PolicyHits)
	m.SetMaps(objs.All())
	m.SetPolicies([]string{"cde-web"}, 0)
	m.Enforcing.WithLabelValues("eth0", "ingress").Set(1)
	m.Overrides.WithLabelValues("PCI_SEGMENT_PRIVILEGE_USER").Set(1)
	for _, name := range []string{"pci_segment_policy_packets_total", "pci_segment_map_capacity_entries",
		"pci_segment_conntrack_entries", "pci_segment_worker_effective_capabilities", "pci_segment_enforcing"} {
		if !strings.Contains(gather(t, m), "\n"+name) {
			t.Errorf("%s is not in the scrape the lint sees", name)
		}
	}
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
