package metrics

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pci-segment/pci-segment/bpf"
)

// mapSizes reports each datapath map's capacity and how many connections
// are tracked now, so that an operator sees a map filling before a policy
// set or the host's connections outgrow it.
type mapSizes struct {
	mu      sync.Mutex
	maps    map[string]*ebpf.Map
	entries map[string]int // of the policy maps, for the set in force
}

var (
	capacityDesc = prometheus.NewDesc("pci_segment_map_capacity_entries",
		"Entries a datapath map holds at most (fixed when the loader starts: --max-prefixes, --max-port-entries, --max-flows).", []string{"map"}, nil)
	conntrackDesc = prometheus.NewDesc("pci_segment_conntrack_entries",
		"Connections tracked now; the capacity is pci_segment_map_capacity_entries{map=\"conntrack\"}.", nil, nil)
	entriesDesc = prometheus.NewDesc("pci_segment_policy_map_entries",
		"Entries the policy set in force takes in a policy map (its half; the map holds two halves, so half its capacity is the set's room).", []string{"map"}, nil)
)

// SetEntries records how many entries the set in force takes in each
// policy map.
func (m *Metrics) SetEntries(entries map[string]int) {
	m.maps.mu.Lock()
	m.maps.entries = entries
	m.maps.mu.Unlock()
}

// SetMaps gives the maps the worker holds, by name.
func (m *Metrics) SetMaps(maps map[string]*ebpf.Map) {
	m.maps.mu.Lock()
	m.maps.maps = maps
	m.maps.mu.Unlock()
}

func (s *mapSizes) Describe(ch chan<- *prometheus.Desc) {
	ch <- capacityDesc
	ch <- conntrackDesc
	ch <- entriesDesc
}

func (s *mapSizes) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	maps, entries := s.maps, s.entries
	s.mu.Unlock()
	for name, n := range entries {
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(n), name)
	}
	for name, m := range maps {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(m.MaxEntries()), name)
	}
	ct := maps[bpf.DatapathMapConntrack]
	if ct == nil {
		return
	}
	key := make([]byte, ct.KeySize())
	next := make([]byte, ct.KeySize())
	n := 0
	var cur any // nil: from the start
	for {
		if err := ct.NextKey(cur, next); err != nil {
			break // ErrKeyNotExist at the end
		}
		n++
		copy(key, next)
		cur = key
	}
	ch <- prometheus.MustNewConstMetric(conntrackDesc, prometheus.GaugeValue, float64(n))
}
