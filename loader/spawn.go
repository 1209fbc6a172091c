package loader

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/mac"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
)

// Limits on what the loader takes from the worker's stdout and stderr,
// which an attacker who owns the worker writes.
const (
	maxOutputLine  = 1024 // longer lines are cut
	outputPerSec   = 50   // lines logged per second; the rest are counted
	outputDrainMax = time.Second
)

// worker is a running worker process.
type worker struct {
	pid  int
	proc *os.Process
	// done is closed when the worker has exited and its output has
	// been read to the end (or outputDrainMax passed); err, state and
	// violation then say how it ended.
	done      chan struct{}
	err       error
	state     *os.ProcessState
	violation *sandbox.Violation // the call its seccomp filter killed it for
}

// spawnWorker starts exe as `pci-segment worker` under acct, with the IPC
// socket as fd 3. exe is /proc/self/exe in production: the binary this
// loader runs, even if a package upgrade has replaced the file since.
//
// The child never holds a capability: the forking thread first empties its
// own bounding, inheritable and ambient sets and sets NoNewPrivs, then the
// kernel clears the permitted and effective sets when the child changes uid
// at exec (and an empty bounding set leaves even uid 0 with nothing). These
// settings are per thread, so the fork happens on a locked thread that is
// never handed back to the Go scheduler; it stays in Wait so that the
// child's parent-death signal, which fires when that thread exits, means
// "the loader is gone".
func spawnWorker(exe string, args, env []string, acct privilege.Account, ipcEnd *os.File, log hclog.Logger) (*worker, error) {
	// Output goes through a pipe the loader reads line by line, never to
	// the loader's terminal, and the worker gets a session of its own,
	// so it has no controlling terminal to type into.
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create worker output pipe: %w", err)
	}
	type started struct {
		proc *os.Process
		err  error
	}
	startc := make(chan started, 1)
	w := &worker{done: make(chan struct{})}
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread's privileges are reduced, so Go
		// must discard it when this goroutine returns.
		if err := privilege.LimitThread(0); err != nil {
			startc <- started{err: fmt.Errorf("reduce privileges of the spawning thread: %w", err)}
			return
		}
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			startc <- started{err: fmt.Errorf("set NoNewPrivs on the spawning thread: %w", err)}
			return
		}
		if err := mac.ExecWorker(mac.Worker(), mac.Running); err != nil {
			startc <- started{err: err}
			return
		}
		cmd := &exec.Cmd{
			Path:       exe,
			Args:       append([]string{"pci-segment", "worker"}, args...),
			Env:        env,
			Stdout:     wr,
			Stderr:     wr,
			ExtraFiles: []*os.File{ipcEnd},
			Dir:        "/",
			SysProcAttr: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: acct.UID, Gid: acct.GID, Groups: acct.Groups},
				Pdeathsig:  syscall.SIGKILL,
				Setsid:     true,
			},
		}
		if err := cmd.Start(); err != nil {
			startc <- started{err: fmt.Errorf("start worker: %w", err)}
			return
		}
		startc <- started{proc: cmd.Process}
		w.err = cmd.Wait()
		w.state = cmd.ProcessState
		close(exited)
	}()
	s := <-startc
	wr.Close()
	if s.err != nil {
		r.Close()
		return nil, s.err
	}
	w.pid, w.proc = s.proc.Pid, s.proc
	drained := make(chan struct{})
	go func() {
		w.violation = relayOutput(r, log.With("worker_pid", w.pid))
		r.Close()
		close(drained)
	}()
	go func() {
		<-exited
		// What the worker started in its session goes with it: a child
		// holding the output pipe or the map fds must not outlive the
		// worker the loader replaced. Both filters refuse fork, so this
		// matters only under PCI_SEGMENT_DISABLE_SECCOMP, and a child
		// that made a session of its own escapes it.
		unix.Kill(-w.pid, unix.SIGKILL)
		select {
		case <-drained:
		case <-time.After(outputDrainMax):
		}
		close(w.done)
	}()
	return w, nil
}

// relayOutput logs the worker's output, one line per record, cut to
// maxOutputLine and at most outputPerSec lines a second, and returns the
// seccomp violation it reported, if any. The lines are data, never log
// format: hclog quotes and escapes them.
func relayOutput(r *os.File, log hclog.Logger) *sandbox.Violation {
	br := bufio.NewReaderSize(r, maxOutputLine)
	var violation *sandbox.Violation
	var second time.Time
	lines, dropped := 0, 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			// A line longer than the buffer arrives in pieces; each is
			// logged as a line of its own.
			text := strings.TrimRight(string(line), "\r\n")
			if v, ok := sandbox.ParseViolation(text); ok {
				violation = &v
				log.Error("worker killed by its seccomp filter", "syscall", v.Syscall, "nr", v.Nr)
			} else if now := time.Now(); now.Sub(second) >= time.Second {
				if dropped > 0 {
					log.Warn("worker output suppressed", "lines", dropped)
				}
				second, lines, dropped = now, 1, 0
				log.Info("worker", "output", text)
			} else if lines < outputPerSec {
				lines++
				log.Info("worker", "output", text)
			} else {
				dropped++
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			if dropped > 0 {
				log.Warn("worker output suppressed", "lines", dropped)
			}
			return violation
		}
	}
}

// stop asks the worker to exit and kills it when it does not in time.
func (w *worker) stop(timeout time.Duration) {
	w.proc.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(timeout):
		w.proc.Kill()
		<-w.done
	}
}

// why says how a worker that is done ended.
func (w *worker) why() string {
	switch {
	case w.violation != nil:
		return fmt.Sprintf("killed by its seccomp filter for calling %s (%d)", w.violation.Syscall, w.violation.Nr)
	case sandbox.KilledByFilter(w.state):
		return fmt.Sprintf("killed by its seccomp filter (%v)", w.err)
	case w.err != nil:
		return fmt.Sprintf("exited: %v", w.err)
	}
	return "exited with status 0"
}
