package loader

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

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
	violation atomic.Pointer[sandbox.Violation] // the call its seccomp filter killed it for
}

// spawnWorker starts exe as `pci-segment worker` under acct, with the IPC
// socket as fd 3. exe is /proc/self/fd/N in production: the pci-segment
// binary the loader opened at start (privilege.OpenExecutable). It starts with no
// capability (privilege.StartBare), under NoNewPrivs, in
// the worker's MAC confinement when one is expected.
func spawnWorker(exe string, args, env []string, acct privilege.Account, ipcEnd *os.File, log hclog.Logger) (*worker, error) {
	// Output goes through a pipe the loader reads line by line, never to
	// the loader's terminal, and the worker gets a session of its own,
	// so it has no controlling terminal to type into.
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create worker output pipe: %w", err)
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
	waited, err := privilege.StartBare(cmd, func() error { return mac.ExecWorker(mac.Worker(), mac.Running) })
	wr.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	w := &worker{pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	drained := make(chan struct{})
	go func() {
		relayOutput(r, log.With("worker_pid", w.pid), &w.violation)
		r.Close()
		close(drained)
	}()
	go func() {
		w.err = <-waited
		w.state = cmd.ProcessState
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
// maxOutputLine and at most outputPerSec lines a second (the rest counted).
// The lines are data, never log format: hclog quotes and escapes them. A
// whole line that reports a seccomp kill is kept in violation, the last one
// winning: the real report is the worker's last word.
func relayOutput(r io.Reader, log hclog.Logger, violation *atomic.Pointer[sandbox.Violation]) {
	br := bufio.NewReaderSize(r, maxOutputLine)
	lines := rate.NewLimiter(outputPerSec, outputPerSec)
	dropped, piece := 0, false
	for {
		// A line longer than the buffer arrives in pieces, each logged
		// as a line of its own.
		line, err := br.ReadSlice('\n')
		text := strings.TrimRight(string(line), "\r\n")
		if v, ok := sandbox.ParseViolation(text); ok && !piece && err != bufio.ErrBufferFull {
			violation.Store(&v)
		}
		piece = err == bufio.ErrBufferFull
		switch {
		case len(line) == 0:
		case !lines.Allow():
			dropped++
		default:
			if dropped > 0 {
				log.Warn("worker output suppressed", "lines", dropped)
				dropped = 0
			}
			log.Info("worker", "output", text)
		}
		if err != nil && err != bufio.ErrBufferFull {
			if dropped > 0 {
				log.Warn("worker output suppressed", "lines", dropped)
			}
			return
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

// why says how a worker that is done ended. A compromised worker could
// write a report and exit with the status that goes with it, and so lie
// about why it ended; nothing else follows from the report.
func (w *worker) why() string {
	switch {
	case w.violation.Load() != nil && sandbox.KilledByFilter(w.state):
		v := w.violation.Load()
		return fmt.Sprintf("killed by its seccomp filter for calling %s (%d)", v.Syscall, v.Nr)
	case sandbox.KilledByFilter(w.state):
		return fmt.Sprintf("killed by its seccomp filter (%v)", w.err)
	case w.err != nil:
		return fmt.Sprintf("exited: %v", w.err)
	}
	return "exited with status 0"
}
