package metrics

import (
	"math/bits"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pci-segment/pci-segment/privilege"
)

// privileges reports the worker's own privilege state at each scrape, read
// from /proc as status reads it, so that an alert fires the moment it is
// not what the split promises: no capability, NoNewPrivs, a seccomp filter.
type privileges struct{}

var (
	capsDesc = prometheus.NewDesc("pci_segment_worker_effective_capabilities",
		"Capabilities in the worker's effective set, on its least confined thread (0 as it should be).", nil, nil)
	seccompDesc = prometheus.NewDesc("pci_segment_worker_seccomp_mode",
		"The worker's seccomp mode on its least confined thread: 0 disabled, 1 strict, 2 filter.", nil, nil)
	nnpDesc = prometheus.NewDesc("pci_segment_worker_no_new_privs",
		"1 when every thread of the worker has NoNewPrivs.", nil, nil)
)

func (privileges) Describe(ch chan<- *prometheus.Desc) {
	ch <- capsDesc
	ch <- seccompDesc
	ch <- nnpDesc
}

func (privileges) Collect(ch chan<- prometheus.Metric) {
	p, err := privilege.ReadProcess(os.Getpid())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(capsDesc, err)
		return
	}
	caps, mode, nnp := 0, privilege.SeccompFilter, 1.0
	for _, t := range append([]privilege.ThreadState{p.ThreadState}, p.Threads...) {
		caps = max(caps, bits.OnesCount64(t.CapEff))
		mode = min(mode, t.Seccomp)
		if !t.NoNewPrivs {
			nnp = 0
		}
	}
	ch <- prometheus.MustNewConstMetric(capsDesc, prometheus.GaugeValue, float64(caps))
	ch <- prometheus.MustNewConstMetric(seccompDesc, prometheus.GaugeValue, float64(mode))
	ch <- prometheus.MustNewConstMetric(nnpDesc, prometheus.GaugeValue, nnp)
}
