// Package worker is the unprivileged half of pci-segment. The loader starts
// it as the service account with no capabilities and NoNewPrivs; it never
// runs a line as root, never creates maps and never loads programs.
//
// Order of work (Run), chosen so that nothing it reads can act before it is
// confined:
//  1. check its own privilege state and refuse to go on if any capability
//     survived or NoNewPrivs is off (a half-privileged worker is an error);
//  2. install Landlock and the seccomp filter (packages confine, sandbox),
//     then check that threads born after them carry the same state;
//  3. greet the loader and receive the map fds, each checked against the
//     datapath's map definitions before use, and the generation to apply;
//  4. read, validate and compile the policies, write the inactive half of
//     the maps, flip, and report "policy applied";
//  5. turn denied-packet events into audit records and serve metrics.
package worker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/confine"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/mac"
	"github.com/pci-segment/pci-segment/metrics"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
)

// IPCFD is the descriptor the loader passes the channel on.
const IPCFD = 3

// Config is the worker's command line, set by the loader.
type Config struct {
	Policies    []string
	Labels      string
	AuditDir    string
	StateDir    string
	MetricsAddr string
	// AllowRoot is set by the loader when --allow-root was given.
	AllowRoot bool
	// Identity is the uid, gid and groups the loader started the worker
	// with; every thread, old and new, must carry exactly these.
	Identity privilege.Identity
	// Seccomp names the filter: sandbox.ModeAllowlist (the default) or
	// sandbox.ModeDenylist, the hardening guide's.
	Seccomp string
	// Monitor runs the datapath in monitor mode (--mode monitor).
	Monitor bool
	// WebConfig is the exporter-toolkit web configuration file (TLS and
	// basic authentication of the metrics server), or "".
	WebConfig string
	// SyslogRecords copies every audit record to syslog, not only the
	// seals (--syslog-every-record).
	SyslogRecords bool
	// Sizes are the map capacities the loader chose (zero fields: the
	// defaults); every received map must have exactly its capacity.
	Sizes bpf.Sizes
}

// ProcessName is the worker's name in ps, the same as the loader's, so that
// `ps -C pci-segment` lists both.
const ProcessName = "pci-segment"

// Run is the worker's main.
func Run(cfg Config, log hclog.Logger) error {
	// The name must hold whatever path the binary was started from.
	_ = os.WriteFile("/proc/self/comm", []byte(ProcessName), 0)

	self, err := privilege.ReadProcess(os.Getpid())
	if err == nil {
		err = checkUnprivileged(self, cfg.Identity, cfg.AllowRoot, false)
	}
	if err != nil {
		return fmt.Errorf("refusing to run: %w (the privilege drop failed; see docs/HARDENING.md, \"Two processes\")", err)
	}
	if err := checkDescriptors(); err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	// Checked before Landlock narrows what it may read: the domain and
	// profile the kernel put it in at exec.
	confinement, err := mac.Check(mac.Worker(), mac.Running)
	if err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	if !confinement.Skipped { // the skip is logged and audited with the overrides
		confinement.Log(log)
	}
	// Landlock before seccomp: the filter allows none of its calls.
	confined, err := confine.Worker(confine.Paths{Policies: cfg.Policies, AuditDir: cfg.AuditDir,
		StateDir: cfg.StateDir, MetricsAddr: cfg.MetricsAddr, WebConfig: cfg.WebConfig})
	if err != nil {
		return fmt.Errorf("refusing to run: landlock: %w", err)
	}
	if err := confine.WriteReport(cfg.StateDir, confined); err != nil {
		log.Warn("landlock report not written; status cannot show it", "error", err)
	}
	disabled, err := sandbox.DisabledByEnv()
	if err != nil {
		return err
	}
	if disabled {
		log.Warn("development override in effect: own seccomp filter not installed (the loader's, inherited, still applies)", sandbox.DisableEnv, os.Getenv(sandbox.DisableEnv))
	} else {
		pol, err := sandbox.WorkerPolicy(cfg.Seccomp)
		if err != nil {
			return err
		}
		report, err := sandbox.Install(pol)
		if err != nil {
			return fmt.Errorf("install seccomp filter: %w", err)
		}
		if len(report.Skipped) > 0 {
			log.Warn("seccomp entries unknown on this system", "policy", pol.Name, "syscalls", strings.Join(report.Skipped, ","))
		}
	}

	// Threads are where a per-thread setting that missed the process
	// would show: 100 new ones, started now, must match the rest.
	threads, err := privilege.WithNewThreads(newThreadsChecked)
	if err == nil {
		err = checkUnprivileged(threads, cfg.Identity, cfg.AllowRoot, !disabled)
	}
	if err != nil {
		return fmt.Errorf("refusing to run: threads started after the drop: %w", err)
	}

	conn, err := ipc.FromFD(IPCFD)
	if err != nil {
		return fmt.Errorf("open channel to loader: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, stateErr := audit.LoadState(cfg.StateDir)
	if err := conn.Send(ctx, ipc.Hello{Version: ipc.Version, ChainState: stateErr == nil}); err != nil {
		return err
	}
	m, err := conn.Expect(ctx, ipc.TypeSetup)
	if err != nil {
		return fmt.Errorf("receive the setup: %w", err)
	}
	setup := m.(ipc.Setup)
	syslog, listener := setup.Take(ipc.FDSyslog), setup.Take(ipc.FDListener)
	maps, err := receiveMaps(setup, cfg.Sizes.OrDefault())
	if err != nil {
		return err
	}
	generation := setup.Generation
	var handed net.Listener
	if listener >= 0 {
		f := os.NewFile(uintptr(listener), "metrics listener")
		handed, err = net.FileListener(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("the metrics socket the loader handed over: %w", err)
		}
	}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()

	labels, err := policy.ParseLabels(cfg.Labels)
	if err != nil {
		return fmt.Errorf("--labels: %w", err)
	}
	// Everything that can fail is opened before the policy goes live:
	// once the loader hears "applied" it attaches and pins.
	var chain string
	if setup.Key != ([32]byte{}) {
		chain = hex.EncodeToString(setup.Chain[:])
	}
	met := metrics.New(maps[bpf.DatapathMapCounters], maps[bpf.DatapathMapPolicyHits])
	met.SetMaps(maps)
	anchor := syslogAnchor(syslog, met.SealsCopied, log)
	opts := audit.Options{Anchor: anchor}
	if cfg.SyslogRecords {
		opts.Copy = anchor
	}
	aw, err := audit.Open(cfg.AuditDir, cfg.StateDir, chain, audit.Key(setup.Key), audit.Options{Anchor: opts.Anchor, Copy: opts.Copy,
		// Enforcement never waits on the log: a full disk or a read-only
		// directory is counted and logged, and a gap record follows
		// when writing works again.
		OnError: func(err error, lost int) {
			met.AuditWriteErrors.Add(float64(lost))
			log.Error("audit write failed; a gap record will count the records lost", "records", lost, "error", err)
		}})
	// The writer holds the key now, and evolves it: this copy is cleared
	// (the received message's bytes are left to the collector).
	setup.Key = [32]byte{}
	if err != nil {
		return err
	}
	defer aw.Close()
	rec := &recorder{w: aw, m: met, log: log}
	rd, err := ringbuf.NewReader(maps[bpf.DatapathMapEvents])
	if err != nil {
		return fmt.Errorf("open event ring buffer: %w", err)
	}
	defer rd.Close()
	var ready readiness
	var addr net.Addr
	var served <-chan error
	if handed != nil {
		addr, served, err = metrics.ServeOn(handed, met.Registry, ready.ready, cfg.WebConfig)
	} else {
		addr, served, err = metrics.Serve(cfg.MetricsAddr, met.Registry, ready.ready, cfg.WebConfig)
	}
	if err != nil {
		return err
	}
	log.Info("serving metrics", "addr", addr.String())

	copies := "syslog"
	if anchor == nil {
		copies = "none: no syslog connection, so a cut of the log past the worker's state would not show"
	}
	rec.write(audit.Record{Type: audit.TypeServiceStart, Outcome: "success", Who: who(),
		Details: map[string]any{"pid": os.Getpid(), "seal_copies": copies}})
	rec.write(privilegeRecord(cfg.Identity, len(threads.Threads), confinement))
	for _, o := range overrides(cfg, disabled) {
		name, _, _ := strings.Cut(o, "=")
		met.Overrides.WithLabelValues(name).Set(1)
		log.Warn("development override in effect", "override", o)
		rec.write(audit.Record{Type: audit.TypeOverride, Outcome: "success", Who: who(), Resource: o,
			Details: map[string]any{"production": "not allowed (PCI-DSS Req 2.2.4)"}})
	}
	// Watched before the first read, so that an edit while it loads is
	// not missed: it becomes a reload right after.
	triggers := make(chan string, 4)
	dirs, err := confine.PolicyDirs(cfg.Policies)
	if err == nil {
		var w interface{ Close() error }
		if w, err = watch(dirs, triggers, log); err == nil {
			defer w.Close()
		}
	}
	if err != nil {
		// SIGHUP still reloads; the operator must know that edits alone
		// do not.
		log.Error("policy directories not watched; reload with SIGHUP", "error", err)
	}
	a := &applier{cfg: cfg, labels: labels, pm: datapath.Writer(maps), rec: rec, met: met, log: log, conn: conn, ready: &ready}
	rec.ready = &ready
	a.pm.Monitor = cfg.Monitor
	if cfg.Monitor {
		met.MonitorMode.Set(1)
		log.Warn("monitor mode: the host is NOT segmented; what the policy denies passes, counted and audited as would-be denials")
		rec.write(audit.Record{Type: audit.TypeMonitorMode, Outcome: "warning", Who: who(), Resource: "--mode monitor",
			Details: map[string]any{"effect": "packets the policy denies pass", "production": "not segmented"}})
	}
	set, compiled, err := a.load()
	if err != nil {
		rec.write(audit.Record{Type: audit.TypePolicyRejected, Outcome: "failure", Who: who(), Resource: "policy set",
			Details: map[string]any{"trigger": triggerStart, "reason": err.Error()}})
		return fmt.Errorf("policy set rejected, nothing applied:\n%w", err)
	}
	if err := a.apply(set, compiled, generation, triggerStart); err != nil {
		return err
	}

	// A fresh deadline: loading a large set may take longer than the
	// greeting's.
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	if err := conn.Send(actx, ipc.Applied{Generation: generation, SetHash: set.Hash}); err != nil {
		return err
	}
	// Not on this goroutine: the loader's next messages (what is attached,
	// which readiness waits for) are read once the loops below run.
	go releaseParse()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec.events(rd)
	}()
	stopSweep, swept := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(swept)
		rec.sweep(maps[bpf.DatapathMapCounters], stopSweep)
	}()

	// The loader closes the channel when it goes; its death also kills us
	// through the parent-death signal.
	closed := make(chan error, 2)
	go func() { closed <- rec.fromLoader(conn, triggers, &a.hup) }()
	go func() { closed <- a.reloads(triggers) }()
	go keepAlive(conn, log)
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	var result error
wait:
	for {
		select {
		case s := <-sigc:
			if s == syscall.SIGUSR1 {
				// logrotate's way: a new file now, the chain carried on.
				if err := aw.Rotate(); err != nil {
					log.Error("rotate the audit log", "error", err)
				}
				continue
			}
			log.Info("stopping", "signal", s.String())
			break wait
		case err := <-closed:
			result = fmt.Errorf("channel to loader: %w", err)
			break wait
		case err := <-served:
			result = fmt.Errorf("metrics server: %w", err)
			break wait
		}
	}
	rd.Close()
	wg.Wait()
	// The repeats still folded and any last loss go in before the stop.
	close(stopSweep)
	<-swept
	rec.write(audit.Record{Type: audit.TypeServiceStop, Outcome: "success", Who: who()})
	return result
}

// overrides lists the development overrides in effect for this worker.
func overrides(cfg Config, seccompDisabled bool) []string {
	var out []string
	for _, name := range []string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP", "PCI_SEGMENT_PRIVILEGE_USER", "PCI_SEGMENT_PRIVILEGE_GROUP"} {
		if v := os.Getenv(name); v != "" {
			if b, err := envflag.ParseBool(name, v); err == nil && !b && name == "PCI_SEGMENT_SKIP_PRIVILEGE_DROP" {
				continue
			}
			out = append(out, name+"="+v)
		}
	}
	if seccompDisabled {
		out = append(out, sandbox.DisableEnv+"="+os.Getenv(sandbox.DisableEnv))
	}
	if skip, _ := envflag.Bool(mac.SkipEnv); skip {
		out = append(out, mac.SkipEnv+"="+os.Getenv(mac.SkipEnv))
	}
	if cfg.AllowRoot {
		out = append(out, "--allow-root")
	}
	return out
}

// checkDescriptors refuses descriptors inherited beyond stdio and the
// channel: anything else open without close-on-exec this early came from
// the parent by mistake (the runtime's own are close-on-exec).
func checkDescriptors() error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list open descriptors: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= IPCFD {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		if flags&unix.FD_CLOEXEC == 0 {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			return fmt.Errorf("inherited descriptor %d (%s): the worker must receive only its channel", fd, target)
		}
	}
	return nil
}

// syslogAnchor writes each epoch's seal to the syslog connection the
// loader handed over (fd -1: none), as authpriv.notice: the copy outside
// the worker that makes a truncated tail of the audit log detectable.
// copied says whether the last copy went (0 from the start without one).
func syslogAnchor(fd int, copied prometheus.Gauge, log hclog.Logger) func([]byte) {
	if fd < 0 {
		log.Warn("audit seals are not copied to syslog: a cut of the log past the worker's state would not show")
		return nil
	}
	copied.Set(1)
	return func(line []byte) {
		if _, err := unix.Write(fd, audit.SyslogMessage(line)); err != nil {
			copied.Set(0)
			log.Warn("audit seal not copied to syslog", "error", err)
			return
		}
		copied.Set(1)
	}
}

// aliveEvery is how often the worker tells the loader it still runs, well
// inside the loader's silence limit.
const aliveEvery = 10 * time.Second

func keepAlive(conn *ipc.Conn, log hclog.Logger) {
	for range time.Tick(aliveEvery) {
		ctx, cancel := context.WithTimeout(context.Background(), aliveEvery)
		err := conn.Send(ctx, ipc.Alive{})
		cancel()
		if err != nil {
			log.Error("tell loader alive", "error", err)
			return
		}
	}
}

// fromLoader handles the loader's messages until the channel fails or a
// message is not one the worker accepts.
func (r *recorder) fromLoader(conn *ipc.Conn, triggers chan<- string, hup *atomic.Bool) error {
	for {
		m, err := conn.Recv(context.Background())
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case ipc.Event:
			r.linkState(m)
			if m.Kind == ipc.EventLinkAttached && m.Count > 0 {
				continue // the list a new worker is told, not a change
			}
			r.write(loaderEvent(m))
		case ipc.Reload:
			hup.Store(true)
			request(triggers, triggerSIGHUP)
		default:
			ipc.CloseFDs(m)
			return fmt.Errorf("unexpected %s from loader", m.Type())
		}
	}
}

func loaderEvent(e ipc.Event) audit.Record {
	rec := audit.Record{Who: "pci-segment loader", Outcome: "success",
		Details: map[string]any{"count": e.Count, "ifindex": e.Ifindex, "text": e.Text}}
	switch e.Kind {
	case ipc.EventWorkerRestarted:
		rec.Type, rec.Resource = audit.TypeWorkerRestarted, "worker"
	case ipc.EventLinkAttached:
		rec.Type, rec.Resource = audit.TypeLinkChanged, e.Text
		rec.Details["change"] = "attached"
	case ipc.EventLinkDetached:
		rec.Type, rec.Resource = audit.TypeLinkChanged, e.Text
		rec.Details["change"] = "gone"
	default:
		rec.Type = "loader_event"
		rec.Details["kind"] = e.Kind
	}
	return rec
}

func who() string { return fmt.Sprintf("pci-segment worker uid=%d pid=%d", os.Getuid(), os.Getpid()) }

// checkUnprivileged refuses a worker any thread of which is not exactly
// the identity the loader started it with, kept a capability or lacks
// NoNewPrivs, or, once the filter is in (filtered), is outside seccomp
// filter mode. uid 0 is allowed only under the documented overrides, which
// the loader has already logged. It reads /proc rather than asking with
// capget and prctl, which the worker's filter refuses.
func checkUnprivileged(p privilege.Process, want privilege.Identity, allowRoot, filtered bool) error {
	for _, t := range append([]privilege.ThreadState{p.ThreadState}, p.Threads...) {
		if err := want.Check(t); err != nil {
			return fmt.Errorf("not the identity the loader gave: %w", err)
		}
	}
	if err := p.Uniform(); err != nil {
		return err
	}
	st := p.ThreadState
	if st.CapEff|st.CapPrm|st.CapInh|st.CapBnd|st.CapAmb != 0 {
		return fmt.Errorf("capabilities survived the drop: effective %#x permitted %#x inheritable %#x bounding %#x ambient %#x",
			st.CapEff, st.CapPrm, st.CapInh, st.CapBnd, st.CapAmb)
	}
	if !st.NoNewPrivs {
		return errors.New("NoNewPrivs is not set")
	}
	if filtered && st.Seccomp != privilege.SeccompFilter {
		return fmt.Errorf("seccomp is %v after the filter was installed", st.Seccomp)
	}
	if st.UID.Effective == 0 || st.GID.Effective == 0 {
		skip, err := envflag.Bool("PCI_SEGMENT_SKIP_PRIVILEGE_DROP")
		if err != nil {
			return err
		}
		if !skip && !allowRoot {
			return fmt.Errorf("running as uid %d gid %d without a development override", st.UID.Effective, st.GID.Effective)
		}
	}
	return nil
}

// newThreadsChecked is how many threads the worker starts after its drop
// to check that they carry it.
const newThreadsChecked = 100

// privilegeRecord says what the drop left: the identity every thread was
// checked against, how many threads (the 100 new ones included) carried it,
// and the process's state now.
func privilegeRecord(id privilege.Identity, threadsChecked int, confinement mac.Result) audit.Record {
	d := map[string]any{"uid": os.Getuid(), "gid": os.Getgid(), "identity": id.String(), "threads_checked": threadsChecked}
	if len(confinement.Verified) > 0 {
		d["mac_verified"] = confinement.Verified
	}
	if p, err := privilege.ReadProcess(os.Getpid()); err == nil {
		d["state"] = p
	} else {
		d["error"] = err.Error()
	}
	return audit.Record{Type: audit.TypePrivilegeDrop, Outcome: "success", Who: who(), Details: d}
}

// receiveMaps takes the map fds of a setup and checks each against the
// datapath's definition before any use.
func receiveMaps(msg ipc.Setup, sizes bpf.Sizes) (map[string]*ebpf.Map, error) {
	maps := map[string]*ebpf.Map{}
	fail := func(err error) (map[string]*ebpf.Map, error) {
		for _, mp := range maps {
			mp.Close()
		}
		return nil, err
	}
	for i, name := range msg.Names {
		mp, err := ebpf.NewMapFromFD(msg.FDs[i]) // closes it on error
		if err != nil {
			for _, fd := range msg.FDs[i+1:] {
				unix.Close(fd)
			}
			return fail(fmt.Errorf("received fd for map %q: %w", name, err))
		}
		if _, dup := maps[name]; dup {
			mp.Close()
			return fail(fmt.Errorf("map %q received twice", name))
		}
		maps[name] = mp
		if err := bpf.Check(mp, name, sizes); err != nil {
			for _, fd := range msg.FDs[i+1:] {
				unix.Close(fd)
			}
			return fail(err)
		}
	}
	for _, name := range bpf.WorkerMaps {
		if maps[name] == nil {
			return fail(fmt.Errorf("loader did not send map %q", name))
		}
	}
	return maps, nil
}

// recorder writes audit records, counting every write and every failure.
type recorder struct {
	w      *audit.Writer
	m      *metrics.Metrics
	log    hclog.Logger
	ifname sync.Map // ifindex → name
	flows  flows
	ready  *readiness
}

// linkState keeps the metrics and readiness in step with what the loader
// reports: restarts, interfaces attached and gone.
func (r *recorder) linkState(e ipc.Event) {
	switch e.Kind {
	case ipc.EventWorkerRestarted:
		r.m.WorkerRestarts.Add(float64(e.Count))
	case ipc.EventLinkAttached:
		// The loader attaches both directions together, or neither.
		for _, d := range []string{"ingress", "egress"} {
			r.m.Enforcing.WithLabelValues(e.Text, d).Set(1)
		}
		r.ready.link(e.Text, true)
	case ipc.EventLinkDetached:
		for _, d := range []string{"ingress", "egress"} {
			r.m.Enforcing.DeleteLabelValues(e.Text, d)
		}
		r.ready.link(e.Text, false)
	}
}

// readiness is what /readyz answers: ready once a policy is applied and
// the loader reports the links attached.
type readiness struct {
	mu      sync.Mutex
	applied bool
	links   map[string]bool
}

func (rd *readiness) link(name string, up bool) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.links == nil {
		rd.links = map[string]bool{}
	}
	if up {
		rd.links[name] = true
	} else {
		delete(rd.links, name)
	}
}

func (rd *readiness) policy() {
	rd.mu.Lock()
	rd.applied = true
	rd.mu.Unlock()
}

func (rd *readiness) ready() (bool, string) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	switch {
	case !rd.applied:
		return false, "no policy applied yet"
	case len(rd.links) == 0:
		return false, "the loader has reported no attached link yet"
	}
	names := make([]string, 0, len(rd.links))
	for n := range rd.links {
		names = append(names, n)
	}
	slices.Sort(names)
	return true, "enforcing on " + strings.Join(names, ", ")
}

func (r *recorder) write(rec audit.Record) {
	if err := r.w.Write(rec); err != nil {
		r.m.AuditWriteErrors.Inc()
		r.log.Error("audit write failed", "type", rec.Type, "error", err)
		return
	}
	r.m.AuditRecords.Inc()
}

// events writes a record for each denied packet the datapath reports,
// repeats of a flow folded (floods.go).
func (r *recorder) events(rd *ringbuf.Reader) {
	for {
		rb, err := rd.Read()
		if err != nil {
			if !errors.Is(err, ringbuf.ErrClosed) {
				r.log.Error("event ring buffer read failed", "error", err)
			}
			return
		}
		var e bpf.DatapathEvent
		if err := binary.Read(bytes.NewReader(rb.RawSample), binary.NativeEndian, &e); err != nil {
			r.log.Error("malformed event from datapath", "bytes", len(rb.RawSample), "error", err)
			continue
		}
		if rec := r.denied(&e); r.flows.seen(e, rec, time.Now()) {
			r.write(rec)
		}
	}
}

// sweep writes, every tick until stop, the folded repeats of floods whose
// window closed and a gap record for any event the ring buffer lost.
func (r *recorder) sweep(counters *ebpf.Map, stop <-chan struct{}) {
	loss := &lossWatch{counters: counters}
	// Losses from before this worker were counted in the audit log by
	// the one before (or are in the datapath's counters, which status
	// and metrics show): start from now.
	loss.gap()
	t := time.NewTicker(floodWindow / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			// Everything still folded, as if its window had closed.
			for _, rec := range r.flows.closed(time.Now().Add(floodWindow)) {
				r.write(rec)
			}
			if rec, ok, err := loss.gap(); err == nil && ok {
				r.write(rec)
			}
			return
		case now := <-t.C:
			for _, rec := range r.flows.closed(now) {
				r.write(rec)
			}
			rec, ok, err := loss.gap()
			if err != nil {
				r.log.Warn("read the datapath's lost-event counter", "error", err)
			} else if ok {
				r.log.Warn("the ring buffer lost denied-packet events; a gap record says how many", "count", rec.Details["count"])
				r.write(rec)
			}
		}
	}
}

func (r *recorder) interfaceName(index uint32) string {
	if n, ok := r.ifname.Load(index); ok {
		return n.(string)
	}
	name := fmt.Sprintf("ifindex %d", index)
	if i, err := net.InterfaceByIndex(int(index)); err == nil {
		name = i.Name
	}
	r.ifname.Store(index, name)
	return name
}

func (r *recorder) denied(e *bpf.DatapathEvent) audit.Record {
	var src, dst netip.Addr
	switch e.Family {
	case 4:
		src = netip.AddrFrom4([4]byte(e.Saddr[:4]))
		dst = netip.AddrFrom4([4]byte(e.Daddr[:4]))
	case 6:
		src = netip.AddrFrom16(e.Saddr)
		dst = netip.AddrFrom16(e.Daddr)
	}
	dir := "ingress"
	if e.Dir == bpf.DirEgress {
		dir = "egress"
	}
	d := map[string]any{
		"direction": dir,
		"interface": r.interfaceName(e.Ifindex),
		"reason":    bpf.ReasonName(e.Reason),
		"policy":    "default deny",
		"length":    e.Len,
	}
	rec := audit.Record{Type: audit.TypePacketDenied, Outcome: "deny", Origin: r.interfaceName(e.Ifindex), Details: d}
	if e.Monitor != 0 {
		rec.Outcome = "would deny: passed (monitor mode)"
	}
	if src.IsValid() {
		sport, dport := ntohs(e.Sport), ntohs(e.Dport)
		d["protocol"] = protoName(e.Proto)
		d["src"], d["dst"] = src.String(), dst.String()
		d["sport"], d["dport"] = sport, dport
		rec.Who = src.String()
		rec.Resource = netip.AddrPortFrom(dst, dport).String()
	} else {
		d["ethertype"] = fmt.Sprintf("%#04x", e.Ethertype)
		rec.Who = "unknown"
	}
	return rec
}

func ntohs(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	case unix.IPPROTO_ICMP:
		return "ICMP"
	case unix.IPPROTO_ICMPV6:
		return "ICMPv6"
	}
	return strings.TrimSpace(fmt.Sprintf("%d", p))
}
