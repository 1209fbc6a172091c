package lab

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn inside the network namespace ns (a lab namespace name, any name
// under /run/netns, or a path) and returns its error. Sockets fn creates
// belong to that namespace for their whole life, wherever they are used
// afterwards.
//
// fn runs on a fresh goroutine locked to its OS thread, which is switched
// into ns with setns(2) and back afterwards; the caller's thread is never
// touched. Goroutines that fn starts run in the caller's namespace, not in
// ns. fn must not call t.FailNow or t.Fatal (they only work on the test's
// goroutine); a panic in fn is re-raised in the caller. If the thread cannot
// be switched back, it is left locked so that the Go runtime destroys it
// instead of reusing it, and Do reports the error.
func (l *Lab) Do(ns string, fn func() error) error {
	return Do(nsPath(ns), fn)
}

// Do is Lab.Do for any namespace path, without a lab.
func Do(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)

	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		res := result{}
		// Sent in a defer so that runtime.Goexit in fn does not hang Do.
		defer func() { done <- res }()
		runtime.LockOSThread()
		// From here on the thread is unlocked only when it is known to be
		// back in its original namespace.

		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res.err = fmt.Errorf("open current network namespace: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer unix.Close(orig)

		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			res.err = fmt.Errorf("enter network namespace %s: %w", path, err)
			// A failed setns leaves the thread where it was.
			runtime.UnlockOSThread()
			return
		}
		defer func() {
			if r := recover(); r != nil {
				res.panicked, res.value = true, r
			}
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				// Stay locked: the goroutine ends with the thread locked,
				// so the runtime terminates the thread.
				res.err = errors.Join(res.err,
					fmt.Errorf("return from network namespace %s (thread discarded): %w", path, err))
				return
			}
			runtime.UnlockOSThread()
		}()
		res.err = fn()
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}
