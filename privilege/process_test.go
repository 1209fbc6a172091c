package privilege

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

// limitChildEnv makes the test binary the child that drops its
// capabilities, so that the test process keeps its own.
const limitChildEnv = "PCI_SEGMENT_TEST_LIMIT_PROCESS"

// The main goroutine keeps the main thread, as cmd/pci-segment's does: a
// thread StartBare discards is then never the leader, which status and
// these tests read for the whole process.
func init() { runtime.LockOSThread() }

// bareChildEnv makes the test binary a child that prints its own status.
const bareChildEnv = "PCI_SEGMENT_TEST_BARE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(limitChildEnv) != "" {
		os.Exit(limitChild())
	}
	if os.Getenv(inheritChildEnv) != "" {
		os.Exit(inheritChild())
	}
	if os.Getenv(bareChildEnv) != "" {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			os.Exit(1)
		}
		os.Stdout.Write(b)
		os.Exit(0)
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

// A child started bare holds nothing even as uid 0, the thread that
// started it is gone, and the caller keeps what it had.
func TestStartBareLeavesEvenRootWithNothing(t *testing.T) {
	testenv.RequireRoot(t)
	before, err := CurrentCaps()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), bareChildEnv+"=1")
	cmd.Stdout = &out
	waited, err := StartBare(cmd, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil || cmd.ProcessState == nil {
		t.Fatalf("child: %v (state %v)", err, cmd.ProcessState)
	}
	st, err := ParseStatus("child status", []byte(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if st.UID.Effective != 0 || st.CapEff != 0 || st.CapPrm != 0 || st.CapBnd != 0 || st.CapInh != 0 || st.CapAmb != 0 || !st.NoNewPrivs {
		t.Errorf("child as uid %d: %+v, want no capability in any set and NoNewPrivs", st.UID.Effective, st)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if after, err := CurrentCaps(); err != nil || after != before {
		t.Errorf("the caller's capabilities changed: %+v, before %+v (%v)", after, before, err)
	}

	refused := errors.New("no label for you")
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	if _, err := StartBare(cmd, func() error { return refused }); !errors.Is(err, refused) || cmd.Process != nil {
		t.Errorf("a failing prepare: err %v, process %v; want the error and no process", err, cmd.Process)
	}
}
