package loader

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// worker is a running worker process.
type worker struct {
	pid  int
	proc *os.Process
	// done is closed when the worker has exited; err and state are then
	// how it ended.
	done  chan struct{}
	err   error
	state *os.ProcessState
}

// account is the identity the worker runs as.
type account struct {
	user, group string
	uid, gid    uint32
}

// spawnWorker re-executes this binary as `pci-segment worker` under acct,
// with the IPC socket as fd 3. The child never holds a capability: the
// forking thread first empties its own bounding, inheritable and ambient
// sets and sets NoNewPrivs, then the kernel clears the permitted and
// effective sets when the child changes uid at exec (and an empty bounding
// set leaves even uid 0 with nothing). These settings are per thread, so the
// fork happens on a locked thread that is never handed back to the Go
// scheduler; it stays in Wait so that the child's parent-death signal, which
// fires when that thread exits, means "the loader is gone".
func spawnWorker(exe string, args, env []string, acct account, ipcEnd *os.File, logs io.Writer) (*worker, error) {
	type started struct {
		proc *os.Process
		err  error
	}
	startc := make(chan started, 1)
	w := &worker{done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread's privileges are reduced, so Go
		// must discard it when this goroutine returns.
		if err := reduceThread(); err != nil {
			startc <- started{err: fmt.Errorf("reduce privileges of the spawning thread: %w", err)}
			return
		}
		cmd := &exec.Cmd{
			Path: exe,
			Args: append([]string{"pci-segment", "worker"}, args...),
			Env:  env,
			// Not the loader's terminal: output goes through a pipe
			// that the loader copies, and the worker gets a session of
			// its own, so it has no controlling terminal to type into.
			Stdout:     logs,
			Stderr:     logs,
			ExtraFiles: []*os.File{ipcEnd},
			Dir:        "/",
			SysProcAttr: &syscall.SysProcAttr{
				Credential: &syscall.Credential{Uid: acct.uid, Gid: acct.gid, Groups: []uint32{}},
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
		close(w.done)
	}()
	s := <-startc
	if s.err != nil {
		return nil, s.err
	}
	w.pid, w.proc = s.proc.Pid, s.proc
	return w, nil
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

// reduceThread empties the calling thread's bounding, inheritable and
// ambient capability sets and sets NoNewPrivs on it. The thread keeps its
// effective CAP_SETUID/CAP_SETGID, which the fork needs to change identity.
func reduceThread() error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear inheritable capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set NoNewPrivs: %w", err)
	}
	return nil
}

func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read highest capability number: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("parse /proc/sys/kernel/cap_last_cap %q", b)
	}
	return n, nil
}
