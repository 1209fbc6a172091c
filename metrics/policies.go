package metrics

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pci-segment/pci-segment/bpf"
)

// policyHits reports, per policy of the set in force, the packets of the
// flows its rules let in and when the last one passed, so that a rule that never
// matches shows (PCI-DSS Req 1.2.7's ruleset review). Series exist only for
// the policies in force: removing a policy removes its series.
type policyHits struct {
	m *ebpf.Map

	mu    sync.Mutex
	names []string // the set in force, by the index the datapath counts
	half  uint32
}

var (
	policyFlowsDesc = prometheus.NewDesc("pci_segment_policy_packets_total",
		"Packets of the flows a policy's rules let in, both ways, since the set in force was applied.", []string{"policy"}, nil)
	policyLastDesc = prometheus.NewDesc("pci_segment_policy_last_match_timestamp_seconds",
		"When a packet of a flow a policy's rules let in last passed, in seconds since the Unix epoch; 0 if none since the set was applied.", []string{"policy"}, nil)
)

// SetPolicies names the policies of the set just applied, in the order its
// compilation indexed them, and the half it was written to.
func (m *Metrics) SetPolicies(names []string, half uint32) {
	m.hits.mu.Lock()
	m.hits.names, m.hits.half = append([]string(nil), names...), half
	m.hits.mu.Unlock()
}

func (p *policyHits) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyFlowsDesc
	ch <- policyLastDesc
}

func (p *policyHits) Collect(ch chan<- prometheus.Metric) {
	if p.m == nil {
		return
	}
	p.mu.Lock()
	names, half := p.names, p.half
	p.mu.Unlock()
	for i, name := range names {
		var per []bpf.DatapathPolicyHit
		if err := p.m.Lookup(half*bpf.MaxPolicies+uint32(i), &per); err != nil {
			ch <- prometheus.NewInvalidMetric(policyFlowsDesc, err)
			return
		}
		packets, last, ok := bpf.SumPolicyHit(per)
		at := 0.0
		if ok {
			at = float64(last.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(policyFlowsDesc, prometheus.CounterValue, float64(packets), name)
		ch <- prometheus.MustNewConstMetric(policyLastDesc, prometheus.GaugeValue, at, name)
	}
}
