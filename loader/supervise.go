package loader

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/statedir"
)

// Supervision timing.
const (
	helloTimeout   = 10 * time.Second
	appliedTimeout = 2 * time.Minute
	// A running worker that says nothing for this long is taken as hung;
	// it sends Alive far more often.
	silenceLimit = time.Minute
	stopTimeout  = 5 * time.Second
	sendTimeout  = 5 * time.Second
	// How long a worker's last messages, or its exit after a violation,
	// are waited for (watch).
	exitGrace = 2 * time.Second
	// Restarts back off exponentially from minBackoff to maxBackoff over
	// consecutive failures; a worker that ran stableAfter resets it.
	minBackoff  = time.Second
	maxBackoff  = time.Minute
	stableAfter = time.Minute
)

// supervisor runs one worker at a time and replaces it when it exits,
// breaks the protocol or falls silent. The pinned links enforce the last
// applied policy throughout, so a restart never opens a gap.
type supervisor struct {
	exe  string
	cfg  Config
	acct privilege.Account
	maps *bpf.DatapathMaps
	// readOnly holds read-only descriptors of the maps in
	// bpf.WorkerReadOnly.
	readOnly map[string]*ebpf.Map
	// keys is the root-only directory of the audit chains' first keys.
	keys *os.File
	log  hclog.Logger
	// onApplied runs once, on the first policy a worker applies: it
	// attaches and pins. Its error ends the loader.
	onApplied func() error
	// links signals interface changes; onLinks then follows them, once
	// attached, and returns what the worker should audit.
	links   <-chan struct{}
	onLinks func() []ipc.Message
	// enforcing lists the interfaces attached as events with count (1:
	// for a new worker, what was attached before it).
	enforcing func(count uint32) []ipc.Message

	attached bool
	w        *worker
	conn     *ipc.Conn
	mon      ipc.Monitor // Next persists across workers
	msgs     chan received
	quit     chan struct{} // closed when the current worker is stopped
	started  time.Time
	restarts uint32
	lastWhy  string // why the last worker was replaced
}

type received struct {
	m   ipc.Message
	err error
}

type signalled struct{ os.Signal }

func (signalled) Error() string { return "signalled" }

// fatal ends the loader rather than the worker.
type fatal struct{ error }

// serve supervises workers until SIGTERM or SIGINT, which it returns.
// SIGHUP is forwarded to the worker as Reload. A worker that ends before
// the first policy is applied ends the loader too: nothing is attached,
// and the usual cause, a policy that does not validate, is the worker's
// last output.
func (s *supervisor) serve(sigc <-chan os.Signal) (os.Signal, error) {
	failures := 0
	for {
		why := s.start()
		if why == nil {
			why = s.watch(sigc)
			s.stop()
		}
		var sig signalled
		var f fatal
		switch {
		case errors.As(why, &sig):
			return sig.Signal, nil
		case errors.As(why, &f):
			return nil, f.error
		case !s.attached:
			return nil, fmt.Errorf("worker ended before applying a policy (%w); nothing was attached", why)
		}
		s.restarts++
		s.lastWhy = why.Error()
		if time.Since(s.started) >= stableAfter {
			failures = 0
		}
		backoff := backoffAfter(failures)
		failures++
		s.log.Error("worker replaced; pinned links keep enforcing the last policy",
			"reason", s.lastWhy, "restarts", s.restarts, "backoff", backoff)
		if sig := s.pause(sigc, backoff); sig != nil {
			return sig, nil
		}
	}
}

// backoffAfter is the wait before the next worker, after that many
// consecutive failures.
func backoffAfter(failures int) time.Duration {
	return min(minBackoff<<min(failures, 6), maxBackoff)
}

// pause waits d, or until a signal that ends the loader (returned).
func (s *supervisor) pause(sigc <-chan os.Signal, d time.Duration) os.Signal {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case sig := <-sigc:
			if sig == syscall.SIGHUP || sig == syscall.SIGUSR1 {
				s.log.Info("reload or audit rotation while no worker runs: the next worker reads the policies and opens the audit file afresh", "signal", sig)
				continue
			}
			return sig
		case <-t.C:
			return nil
		}
	}
}

// start spawns a worker and starts receiving its messages.
func (s *supervisor) start() error {
	// Generations only grow, over adopted maps too (connection tracking
	// entries of an earlier instance are judged again), and a worker that
	// went mid-apply may have made its set live without telling.
	var info bpf.DatapathInfoValue
	if err := s.maps.Info.Lookup(uint32(0), &info); err != nil {
		return fatal{fmt.Errorf("read the generation in force: %w", err)}
	}
	s.mon = ipc.Monitor{Next: max(s.mon.Next, info.Generation+1)}
	conn, end, err := ipc.Pair()
	if err != nil {
		return err
	}
	w, err := spawnWorker(s.exe, append([]string{"--identity", s.acct.Identity.String()}, s.cfg.WorkerArgs...), workerEnv(), s.acct, end, s.log)
	end.Close()
	if err != nil {
		conn.Close()
		return err
	}
	s.w, s.conn, s.started = w, conn, time.Now()
	s.log.Info("worker started", "pid", w.pid, "user", s.acct.User, "group", s.acct.Group)
	s.msgs, s.quit = make(chan received), make(chan struct{})
	go func(c *ipc.Conn, out chan<- received, quit <-chan struct{}) {
		for {
			m, err := c.Recv(context.Background())
			select {
			case out <- received{m, err}:
			case <-quit:
				if err == nil {
					ipc.CloseFDs(m)
				}
				return
			}
			if err != nil {
				return
			}
		}
	}(conn, s.msgs, s.quit)
	return nil
}

// stop ends the current worker.
func (s *supervisor) stop() {
	close(s.quit)
	s.w.stop(stopTimeout)
	s.conn.Close()
}

// patience is how long the worker may stay silent in each state.
var patience = map[ipc.State]time.Duration{
	ipc.StateGreeting: helloTimeout,
	ipc.StateApplying: appliedTimeout,
	ipc.StateRunning:  silenceLimit,
}

// watch returns why the current worker must go: a signal for the loader,
// its exit, a protocol violation, silence, or a fatal error. What a worker
// sent before it exited is still acted on, for up to exitGrace: a policy it
// applied just before is in force, and must be attached. After a violation
// it waits as long for the exit, which says better why it ended (a policy
// it could not apply, a seccomp kill).
func (s *supervisor) watch(sigc <-chan os.Signal) error {
	timer := time.NewTimer(patience[s.mon.State])
	defer timer.Stop()
	exited, msgs := s.w.done, s.msgs
	var violation error
	for {
		going := exited == nil || violation != nil // no news or requests for it
		select {
		case sig := <-sigc:
			switch {
			case going && (sig == syscall.SIGHUP || sig == syscall.SIGUSR1):
				s.log.Info("reload or audit rotation while the worker is replaced: the next worker reads the policies and opens the audit file afresh", "signal", sig)
			case sig == syscall.SIGHUP:
				s.reload()
			case sig == syscall.SIGUSR1:
				// Audit rotation, which the worker does: logrotate and
				// `systemctl kill -s USR1` signal the service's main
				// process, this one.
				s.w.proc.Signal(syscall.SIGUSR1)
			default:
				return signalled{sig}
			}
		case <-exited:
			if violation != nil {
				return errors.New(s.w.why())
			}
			exited = nil
			timer.Reset(exitGrace)
		case <-s.links:
			if s.attached {
				s.followLinks(!going)
			}
		case <-timer.C:
			switch {
			case exited == nil:
				return errors.New(s.w.why())
			case violation != nil:
				return fmt.Errorf("protocol violation: %w", violation)
			}
			return fmt.Errorf("worker silent for %v in state %d", patience[s.mon.State], s.mon.State)
		case r := <-msgs:
			if r.err == nil {
				r.err = s.mon.Accept(r.m, time.Now())
			}
			if r.err != nil {
				if r.m != nil {
					ipc.CloseFDs(r.m)
				}
				if exited == nil { // its channel's end, or its last word
					return errors.New(s.w.why())
				}
				violation, msgs = r.err, nil
				timer.Reset(exitGrace)
				continue
			}
			if err := s.handle(r.m); err != nil {
				return err
			}
			if exited != nil {
				timer.Reset(patience[s.mon.State])
			}
		}
	}
}

// handle acts on a message the monitor accepted.
func (s *supervisor) handle(m ipc.Message) error {
	switch m := m.(type) {
	case ipc.Hello:
		set, err := s.setup(!m.ChainState)
		if err != nil {
			return fatal{err}
		}
		err = s.send(set)
		if fd := set.Take(ipc.FDSyslog); fd >= 0 {
			unix.Close(fd) // the worker's alone
		}
		if err != nil {
			return fmt.Errorf("hand the worker its setup: %w", err)
		}
		var news []ipc.Message
		if s.attached {
			news = s.enforcing(1)
		}
		if s.restarts > 0 {
			news = append(news, ipc.Event{Kind: ipc.EventWorkerRestarted, Count: s.restarts, Text: s.lastWhy[:min(len(s.lastWhy), ipc.MaxText)]})
		}
		return s.send(news...)
	case ipc.Applied:
		s.log.Info("policy applied by worker", "generation", m.Generation, "set_hash", fmt.Sprintf("%x", m.SetHash))
		if !s.attached {
			if err := s.onApplied(); err != nil {
				return fatal{err}
			}
			s.attached = true
			if err := s.send(s.enforcing(0)...); err != nil {
				return err
			}
			// What changed while it started (the netlink signals came
			// before anything was attached).
			s.followLinks(true)
		}
		s.notify("READY=1", fmt.Sprintf("STATUS=enforcing policy generation %d", m.Generation))
	case ipc.Refused:
		// The worker's words, on one line: a line break in a notify
		// message starts another assignment (MAINPID=, FDSTORE=), which
		// the worker must not be able to make systemd hear.
		why, rest, _ := strings.Cut(m.Why, "\n")
		if rest != "" {
			why += " (and more: the worker's log has every finding)"
		}
		s.log.Warn("worker refused to reload; the policy in force stays", "reason", why) // hclog escapes it
		// Quoted: escapes any control character left.
		s.notify("READY=1", "STATUS=reload refused, the policy in force stays: "+strconv.Quote(why))
	case ipc.Alive:
		// The watchdog hears from the loader only what the worker
		// confirms: a worker that hangs or keeps dying lets it fire.
		// (systemd ignores it when the unit sets no WatchdogSec.)
		s.notify("WATCHDOG=1")
	}
	return nil
}

// send gives the worker msgs (the setup, a reload, what the loader saw for
// its audit log), each within sendTimeout.
func (s *supervisor) send(msgs ...ipc.Message) error {
	for _, m := range msgs {
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		err := s.conn.Send(ctx, m) // its error names the message
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// setup is what a worker starts with: its maps, the evidence (counters)
// read-only, so that it can report but never reset it; a new chain's first
// key when it has no chain state, a copy of which goes into the key
// directory for the auditor before the worker sees it; the metrics socket
// systemd passed; a connection to syslog.
func (s *supervisor) setup(newChain bool) (ipc.Setup, error) {
	set := ipc.Setup{Generation: s.mon.Next}
	for _, name := range bpf.WorkerMaps {
		m, err := s.maps.ByName(name)
		if bpf.WorkerReadOnly[name] {
			if m = s.readOnly[name]; m == nil {
				err = fmt.Errorf("no read-only descriptor of map %s", name)
			}
		}
		if err != nil {
			return set, err
		}
		set.Names, set.FDs = append(set.Names, name), append(set.FDs, m.FD())
	}
	if newChain {
		var name string
		var err error
		if set.Chain, set.Key, name, err = statedir.NewChain(s.keys); err != nil {
			return set, err
		}
		s.log.Info("new audit chain; its first key is kept for the auditor", "chain", hex.EncodeToString(set.Chain[:]),
			"key_file", filepath.Join(s.cfg.KeyDir, name))
	}
	if s.cfg.listener != nil {
		set.Names, set.FDs = append(set.Names, ipc.FDListener), append(set.FDs, int(s.cfg.listener.Fd()))
	}
	if s.cfg.Syslog != "" {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			if err = unix.Connect(fd, &unix.SockaddrUnix{Name: s.cfg.Syslog}); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			s.log.Warn("no syslog copy of the audit seals", "socket", s.cfg.Syslog, "error", err)
		} else {
			set.Names, set.FDs = append(set.Names, ipc.FDSyslog), append(set.FDs, fd)
		}
	}
	return set, nil
}

// notify tells systemd, when it runs the loader as a Type=notify service
// (NOTIFY_SOCKET; the worker never gets it): ready once a policy is in
// force and attached, reloading while the worker reads the policies, and
// the watchdog's pings.
func (s *supervisor) notify(state ...string) {
	if !s.attached {
		return // nothing enforces yet: not ready, and not alive either
	}
	if _, err := daemon.SdNotify(false, strings.Join(state, "\n")); err != nil {
		s.log.Warn("notify systemd", "state", state[0], "error", err)
	}
}

// followLinks attaches to new interfaces and forgets gone ones, and tells
// a worker with a policy in force that is not going, for the audit log.
// (One still starting expects its setup first; the loader's log has the
// change, and a new worker hears what is attached.)
func (s *supervisor) followLinks(tell bool) {
	events := s.onLinks()
	if !tell || s.mon.State != ipc.StateRunning {
		return
	}
	if err := s.send(events...); err != nil {
		s.log.Error("tell worker about an interface change", "error", err)
	}
}

// reload forwards SIGHUP to a worker that has a policy in force; one that
// is still starting reads the policies as it starts anyway.
func (s *supervisor) reload() {
	if s.mon.State != ipc.StateRunning {
		s.log.Info("reload requested while the worker starts; it reads the policies afresh")
		return
	}
	if err := s.send(ipc.Reload{}); err != nil {
		s.log.Error("forward reload to worker", "error", err)
		return
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	s.notify("RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000), "STATUS=reloading the policies")
	s.log.Info("reload requested; forwarded to the worker")
}
