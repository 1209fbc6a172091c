package privilege

import (
	"fmt"
	"os"
	"runtime"
	"sync"
)

// WithNewThreads runs n goroutines, each locked to an OS thread, and while
// all of them wait reads the state of every thread of this process. A
// locked goroutine that waits keeps its thread, so the runtime must start
// new threads for the rest: the result shows threads born now, after
// whatever the caller set up, which is where a per-thread setting that did
// not reach the whole process would show. The threads end with their
// goroutines, which return still locked.
func WithNewThreads(n int) (Process, error) {
	var ready, release sync.WaitGroup
	ready.Add(n)
	release.Add(1)
	for range n {
		go func() {
			runtime.LockOSThread() // not unlocked: the thread exits with the goroutine
			ready.Done()
			release.Wait()
		}()
	}
	ready.Wait()
	p, err := ReadProcess(os.Getpid())
	release.Done()
	if err != nil {
		return Process{}, err
	}
	if len(p.Threads) < n {
		return Process{}, fmt.Errorf("started %d locked goroutines but found %d threads", n, len(p.Threads))
	}
	return p, p.Uniform()
}
