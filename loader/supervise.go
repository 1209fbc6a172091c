package loader

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/sandbox"
)

// Supervision timing.
const (
	helloTimeout   = 10 * time.Second
	appliedTimeout = 2 * time.Minute
	stopTimeout    = 5 * time.Second
	// A worker that says nothing for this long is taken as hung; it sends
	// Alive far more often.
	silenceLimit = time.Minute
	// Restarts back off exponentially from minBackoff to maxBackoff; a
	// worker that ran stableAfter resets the backoff.
	minBackoff  = time.Second
	maxBackoff  = time.Minute
	stableAfter = time.Minute
)

// supervisor runs one worker at a time and replaces it when it exits or
// breaks the protocol. The pinned links enforce the last applied policy
// throughout, so a restart never opens a gap.
type supervisor struct {
	exe  string
	cfg  Config
	acct account
	maps *bpf.DatapathMaps
	// readOnly holds read-only descriptors of the maps in
	// bpf.WorkerReadOnly, opened before the capabilities were cut.
	readOnly map[string]*ebpf.Map
	log      hclog.Logger

	w        *worker
	conn     *ipc.Conn
	mon      ipc.Monitor
	msgs     chan received
	quit     chan struct{} // closed when the current worker is stopped
	started  time.Time
	restarts uint32
}

type received struct {
	m   ipc.Message
	err error
}

// start spawns a worker, checks its Hello and hands it the maps.
func (s *supervisor) start() error {
	conn, end, err := ipc.Pair()
	if err != nil {
		return err
	}
	// Not os.Stderr itself: exec then copies through a pipe, so the worker
	// never holds the loader's terminal.
	w, err := spawnWorker(s.exe, workerArgs(s.cfg), workerEnv(), s.acct, end, struct{ io.Writer }{os.Stderr})
	end.Close()
	if err != nil {
		conn.Close()
		return err
	}
	s.w, s.conn, s.started = w, conn, time.Now()
	s.mon = ipc.Monitor{Generation: s.mon.Generation}
	s.log.Info("worker started", "pid", w.pid, "user", s.acct.user, "group", s.acct.group)

	ctx, cancel := context.WithTimeout(context.Background(), helloTimeout)
	defer cancel()
	m, err := conn.Recv(ctx)
	if err == nil {
		err = s.mon.Accept(m)
	}
	if err != nil {
		s.stop()
		return fmt.Errorf("worker greeting: %w", err)
	}
	fds, err := s.mapFDs()
	if err != nil {
		s.stop()
		return err
	}
	if err := conn.Send(ctx, ipc.Maps{Names: bpf.WorkerMaps, FDs: fds}); err != nil {
		s.stop()
		return fmt.Errorf("hand maps to worker: %w", err)
	}
	if s.restarts > 0 {
		ev := ipc.Event{Kind: ipc.EventWorkerRestarted, Count: s.restarts}
		if err := conn.Send(ctx, ev); err != nil {
			s.stop()
			return fmt.Errorf("tell worker about restart: %w", err)
		}
	}
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

// mapFDs lists the descriptors the worker gets; the evidence (counters)
// read-only, so that it can report but never reset it.
func (s *supervisor) mapFDs() ([]int, error) {
	var fds []int
	for _, name := range bpf.WorkerMaps {
		m, err := s.maps.ByName(name)
		if bpf.WorkerReadOnly[name] {
			if m = s.readOnly[name]; m == nil {
				err = fmt.Errorf("no read-only descriptor of map %s", name)
			}
		}
		if err != nil {
			return nil, err
		}
		fds = append(fds, m.FD())
	}
	return fds, nil
}

// awaitApplied waits for the worker's first Applied.
func (s *supervisor) awaitApplied() error {
	select {
	case r := <-s.msgs:
		if r.err == nil {
			r.err = s.mon.Accept(r.m)
		}
		if r.err != nil {
			ipc.CloseFDs(r.m)
			// The usual cause is a policy that failed validation: the
			// worker printed why and exited.
			select {
			case <-s.w.done:
				return fmt.Errorf("worker exited before applying a policy (%v); nothing was attached", s.w.err)
			case <-time.After(stopTimeout):
				return fmt.Errorf("waiting for the worker to apply the policy: %w", r.err)
			}
		}
		a := r.m.(ipc.Applied)
		s.log.Info("policy applied by worker", "generation", a.Generation, "set_hash", fmt.Sprintf("%x", a.SetHash))
		return nil
	case <-s.w.done:
		return fmt.Errorf("worker exited before applying a policy (%v); nothing was attached", s.w.err)
	case <-time.After(appliedTimeout):
		return fmt.Errorf("worker applied no policy within %v", appliedTimeout)
	}
}

// stop ends the current worker.
func (s *supervisor) stop() {
	if s.quit != nil {
		close(s.quit)
		s.quit = nil
	}
	s.w.stop(stopTimeout)
	s.conn.Close()
}

// run supervises until a signal arrives, which it returns.
func (s *supervisor) run(sigc <-chan os.Signal) os.Signal {
	for {
		why := s.watch(sigc)
		if sig, ok := why.(signalled); ok {
			s.stop()
			return sig.Signal
		}
		s.stop()
		s.restarts++
		s.log.Error("worker replaced; pinned links keep enforcing the last policy", "reason", why.Error(), "restarts", s.restarts)
		if sig := s.restart(sigc); sig != nil {
			return sig
		}
	}
}

type signalled struct{ os.Signal }

func (signalled) Error() string { return "signalled" }

// watch returns why the current worker must go: a signal for the loader,
// its exit, a protocol violation, or silence.
func (s *supervisor) watch(sigc <-chan os.Signal) error {
	silence := time.NewTimer(silenceLimit)
	defer silence.Stop()
	for {
		select {
		case sig := <-sigc:
			return signalled{sig}
		case <-s.w.done:
			if s.w.state != nil && sandbox.KilledByFilter(s.w.state) {
				// The worker's own line above names the call.
				return fmt.Errorf("worker killed by its seccomp filter: %v", s.w.err)
			}
			return fmt.Errorf("worker exited: %v", s.w.err)
		case <-silence.C:
			return fmt.Errorf("worker silent for %v", silenceLimit)
		case r := <-s.msgs:
			if r.err == nil {
				r.err = s.mon.Accept(r.m)
			}
			if r.err != nil {
				ipc.CloseFDs(r.m)
				return fmt.Errorf("protocol violation: %w", r.err)
			}
			if a, ok := r.m.(ipc.Applied); ok {
				s.log.Info("policy applied by worker", "generation", a.Generation, "set_hash", fmt.Sprintf("%x", a.SetHash))
			}
			silence.Reset(silenceLimit)
		}
	}
}

// restart starts workers, backing off, until one applies its policy or a
// signal arrives (returned).
func (s *supervisor) restart(sigc <-chan os.Signal) os.Signal {
	backoff := minBackoff
	if time.Since(s.started) < stableAfter {
		backoff = min(minBackoff<<min(s.restarts, 6), maxBackoff)
	}
	for {
		select {
		case sig := <-sigc:
			return sig
		case <-time.After(backoff):
		}
		err := s.start()
		if err == nil {
			if err = s.awaitApplied(); err == nil {
				return nil
			}
			s.stop()
		}
		s.restarts++
		s.log.Error("worker restart failed; pinned links keep enforcing the last policy", "error", err, "restarts", s.restarts)
		backoff = min(backoff*2, maxBackoff)
	}
}
