package privilege

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

// limitChildEnv makes the test binary the child that drops its
// capabilities, so that the test process keeps its own.
const limitChildEnv = "PCI_SEGMENT_TEST_LIMIT_PROCESS"

func TestMain(m *testing.M) {
	if os.Getenv(limitChildEnv) != "" {
		os.Exit(limitChild())
	}
	os.Exit(m.Run())
}

// limitChild parks goroutines on threads of their own, drops, and reads
// every thread back, those parked before and 50 started after.
func limitChild() int {
	keep := CapMask(CapBPF, CapNetAdmin, CapKill)
	var parked sync.WaitGroup
	release := make(chan struct{})
	for range 20 {
		parked.Add(1)
		go func() {
			runtime.LockOSThread()
			parked.Done()
			<-release
		}()
	}
	parked.Wait()
	if err := LimitProcess(keep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	p, err := WithNewThreads(50)
	close(release)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if len(p.Threads) < 70 {
		fmt.Fprintf(os.Stderr, "%d threads, want at least 70\n", len(p.Threads))
		return 1
	}
	for _, t := range p.Threads {
		if t.CapPrm != keep || t.CapEff != keep || t.CapBnd != keep || t.CapInh != 0 || t.CapAmb != 0 {
			fmt.Fprintf(os.Stderr, "thread %d: %+v\n", t.TID, t)
			return 1
		}
	}
	return 0
}

func TestLimitProcessReachesEveryThread(t *testing.T) {
	testenv.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), limitChildEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
