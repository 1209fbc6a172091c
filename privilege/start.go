package privilege

import (
	"fmt"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// StartBare starts cmd from a thread that holds nothing to pass on: its
// bounding, inheritable and ambient sets empty and NoNewPrivs set, so that
// a child that changes uid at exec (cmd.SysProcAttr.Credential) ends with
// no capability, and even uid 0 would. These are per thread, so the thread
// is locked and never handed back to the Go scheduler; it stays to wait for
// the child, whose parent-death signal (Pdeathsig) fires when the thread
// that forked it exits and so means "the parent is gone". prepare, when
// not nil, runs on that thread just before the fork (an exec label is per
// thread too). The channel returned yields cmd.Wait's result, and
// cmd.ProcessState is set, once the child has exited. The program's main
// goroutine should keep the main thread (LockOSThread in init): Go wedges a
// discarded main thread rather than ending it, and /proc/PID/status shows
// that thread for the whole process.
func StartBare(cmd *exec.Cmd, prepare func() error) (<-chan error, error) {
	started, waited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Go discards the thread when this returns
		err := LimitThread(0)
		if err == nil {
			if err = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				err = fmt.Errorf("set NoNewPrivs: %w", err)
			}
		}
		if err == nil && prepare != nil {
			err = prepare()
		}
		if err == nil {
			err = cmd.Start()
		}
		started <- err
		if err == nil {
			waited <- cmd.Wait()
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s from a thread holding nothing: %w", cmd.Path, err)
	}
	return waited, nil
}
