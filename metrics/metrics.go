// Package metrics exposes the worker's Prometheus metrics from its own
// registry. Datapath counters are read from the per-CPU counter map at
// scrape time, so a scrape always shows what the kernel counted.
package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/pci-segment/pci-segment/bpf"
)

// Metrics holds the worker's registry and the values it sets itself.
type Metrics struct {
	Registry         *prometheus.Registry
	PolicyGeneration prometheus.Gauge
	MonitorMode      prometheus.Gauge
	LastApplied      prometheus.Gauge
	Reloads          *prometheus.CounterVec // by result: applied, rejected
	Policies         prometheus.Gauge
	// Governed is 1 for each direction a policy in force governs, 0 for
	// one that is not filtered.
	Governed       *prometheus.GaugeVec
	Rules          prometheus.Gauge
	WorkerRestarts prometheus.Counter
	// Enforcing is 1 per interface the loader reports attached (both
	// directions), by interface name: bounded by the host's interfaces.
	Enforcing        *prometheus.GaugeVec
	Overrides        *prometheus.GaugeVec // by override name, a fixed set
	hits             *policyHits
	maps             *mapSizes
	AuditRecords     prometheus.Counter
	AuditWriteErrors prometheus.Counter
	// SealsCopied is 1 while each audit epoch's seal reaches syslog.
	SealsCopied       prometheus.Gauge
	DatapathReadError prometheus.Counter
}

// New builds the registry around the counter map and, when given, the
// per-policy match counters. Maps, when set later (SetMaps), adds each
// map's capacity and how full connection tracking is.
func New(counters *ebpf.Map, policyHitsMap ...*ebpf.Map) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		PolicyGeneration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_policy_generation",
			Help: "Generation of the policy set in force.",
		}),
		MonitorMode: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_monitor_mode",
			Help: "1 when the datapath only monitors: packets the policy denies are counted and audited, and pass. The host is then not segmented.",
		}),
		LastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_policy_last_applied_timestamp_seconds",
			Help: "When the policy set in force was applied, in seconds since the Unix epoch.",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pci_segment_reloads_total",
			Help: "Policy reloads (SIGHUP or a change in the policy directories) by result: applied, or rejected with the policy in force kept.",
		}, []string{"result"}),
		Policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_policies",
			Help: "Policies of the set in force that select this host.",
		}),
		Governed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pci_segment_governed",
			Help: "1 for a direction (ingress, egress) a policy in force governs, where what no rule allows is dropped; 0 for one that is not filtered.",
		}, []string{"direction"}),
		Rules: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_rules",
			Help: "Rules of the policies in force.",
		}),
		WorkerRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pci_segment_worker_restarts_total",
			Help: "Workers the loader replaced since it started (as it reports them).",
		}),
		Enforcing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pci_segment_enforcing",
			Help: "1 for each interface and direction the datapath is attached to, as the loader reports it.",
		}, []string{"interface", "direction"}),
		Overrides: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pci_segment_override_in_effect",
			Help: "1 for each development override in effect (not allowed in production, PCI-DSS Req 2.2.4).",
		}, []string{"override"}),
		AuditRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pci_segment_audit_records_total",
			Help: "Audit records written.",
		}),
		SealsCopied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pci_segment_audit_seals_copied",
			Help: "1 while each audit epoch's seal is copied to syslog, the anchor outside the worker that shows a truncated audit log; 0 without a syslog connection or after a failed copy.",
		}),
		AuditWriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pci_segment_audit_write_errors_total",
			Help: "Audit records that could not be written.",
		}),
		DatapathReadError: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pci_segment_datapath_read_errors_total",
			Help: "Scrapes that could not read the datapath counters.",
		}),
	}
	m.hits, m.maps = &policyHits{}, &mapSizes{}
	if len(policyHitsMap) > 0 {
		m.hits.m = policyHitsMap[0]
	}
	for _, r := range []string{"applied", "rejected"} {
		m.Reloads.WithLabelValues(r) // present at 0 from the start, for rate() and alerts
	}
	reg.MustRegister(m.PolicyGeneration, m.MonitorMode, m.LastApplied, m.Reloads, m.AuditRecords, m.AuditWriteErrors, m.SealsCopied, m.DatapathReadError,
		m.Policies, m.Governed, m.Rules, m.WorkerRestarts, m.Enforcing, m.Overrides,
		&datapath{counters: counters, readErr: m.DatapathReadError}, privileges{}, m.hits, m.maps,
		collectors.NewBuildInfoCollector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	packetsDesc = prometheus.NewDesc("pci_segment_packets_total",
		"Packets judged by the datapath, by direction and verdict: allow, deny, or would_deny (denied by the policy and passed: monitor mode).", []string{"direction", "verdict"}, nil)
	bytesDesc = prometheus.NewDesc("pci_segment_bytes_total",
		"Bytes judged by the datapath, by direction and verdict.", []string{"direction", "verdict"}, nil)
	dropsDesc = prometheus.NewDesc("pci_segment_dropped_packets_total",
		"Packets dropped, by reason.", []string{"reason"}, nil)
	lostDesc = prometheus.NewDesc("pci_segment_events_lost_total",
		"Denied-packet events the ring buffer had no room for.", nil, nil)
)

type datapath struct {
	counters *ebpf.Map
	readErr  prometheus.Counter
}

func (d *datapath) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
	ch <- dropsDesc
	ch <- lostDesc
}

// read sums a counter slot over CPUs.
func (d *datapath) read(slot uint32) (bpf.DatapathCounter, error) {
	var per []bpf.DatapathCounter
	var sum bpf.DatapathCounter
	if err := d.counters.Lookup(slot, &per); err != nil {
		return sum, err
	}
	for _, c := range per {
		sum.Packets += c.Packets
		sum.Bytes += c.Bytes
	}
	return sum, nil
}

func (d *datapath) Collect(ch chan<- prometheus.Metric) {
	var errs []error
	for dir, dname := range []string{"ingress", "egress"} {
		for verdict, slot := range map[string]uint32{"allow": bpf.CounterVerdict(dir, false),
			"deny": bpf.CounterVerdict(dir, true), "would_deny": bpf.CounterMonitor(dir)} {
			c, err := d.read(slot)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(c.Packets), dname, verdict)
			ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(c.Bytes), dname, verdict)
		}
	}
	for _, r := range bpf.Reasons {
		c, err := d.read(bpf.CounterReason(r))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(dropsDesc, prometheus.CounterValue, float64(c.Packets), bpf.ReasonName(r))
	}
	if c, err := d.read(bpf.CounterEventsLost); err != nil {
		errs = append(errs, err)
	} else {
		ch <- prometheus.MustNewConstMetric(lostDesc, prometheus.CounterValue, float64(c.Packets))
	}
	if len(errs) > 0 {
		d.readErr.Inc()
	}
}

// Serve listens on addr and serves /metrics until the listener fails, and
// /healthz (the worker answers) and /readyz (ready says whether a policy is
// in force on every link, and if not why).
//
// With webConfig, the exporter-toolkit web configuration file as other
// exporters take it, the server speaks TLS and asks for basic
// authentication as the file says, reading it again for each connection.
func Serve(addr string, reg *prometheus.Registry, ready func() (bool, string), webConfig string) (net.Addr, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ServeOn(ln, reg, ready, webConfig)
}

// ServeOn is Serve on a listener already open: the one systemd's socket
// activation passed, through the loader.
func ServeOn(ln net.Listener, reg *prometheus.Registry, ready func() (bool, string), webConfig string) (net.Addr, <-chan error, error) {
	if webConfig != "" {
		if err := web.Validate(webConfig); err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("--web-config-file %s: %w", webConfig, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		var err error
		if webConfig != "" {
			err = web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, slog.New(slog.NewTextHandler(os.Stderr, nil)))
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	return ln.Addr(), done, nil
}
