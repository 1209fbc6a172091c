package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox/internal/cthread"
	"github.com/pci-segment/pci-segment/testenv"
)

// The tests in this file run this test binary again as a worker would run:
// as an unprivileged uid with no capabilities in any set and NoNewPrivs,
// holding map fds a root parent created. The child selects what to do from
// scenarioEnv in TestMain, outside the testing framework, installs a
// policy as the worker does, and reports on stdout; the parent judges its
// exit and output.

const (
	scenarioEnv = "PCI_SEGMENT_SANDBOX_SCENARIO"
	workDirEnv  = "PCI_SEGMENT_SANDBOX_WORKDIR"
	// workerUID is the identity of the children: nobody on Debian. It
	// needs no passwd entry.
	workerUID = 65534
)

// Descriptors the parent passes (ExtraFiles start at 3).
const (
	fdHash    = 3 // a hash map, u32 → u64
	fdRingbuf = 4 // a ring buffer the parent writes 8-byte records into
)

func TestMain(m *testing.M) {
	if s := os.Getenv(scenarioEnv); s != "" {
		os.Exit(runScenario(s))
	}
	code := m.Run()
	if workerBinary != "" {
		os.RemoveAll(filepath.Dir(workerBinary))
	}
	os.Exit(code)
}

// childResult is what a confined child left behind.
type childResult struct {
	stdout, stderr string
	state          *os.ProcessState
}

func (r childResult) String() string {
	return fmt.Sprintf("%v\n--- stdout:\n%s--- stderr:\n%s", r.state, r.stdout, r.stderr)
}

// workerMaps are created by the parent, as root, like the loader's.
type workerMaps struct {
	hash, ring *ebpf.Map
	produce    *ebpf.Program // writes one record into ring per run
}

func newWorkerMaps(t *testing.T) *workerMaps {
	t.Helper()
	hash, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	if err != nil {
		t.Fatalf("create hash map: %v", err)
	}
	t.Cleanup(func() { hash.Close() })
	ring, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 4096})
	if err != nil {
		t.Fatalf("create ring buffer: %v", err)
	}
	t.Cleanup(func() { ring.Close() })
	produce, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R1, 0x5ec),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.LoadMapPtr(asm.R1, ring.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -8),
			asm.Mov.Imm(asm.R3, 8),
			asm.Mov.Imm(asm.R4, 0),
			asm.FnRingbufOutput.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load ring buffer producer: %v", err)
	}
	t.Cleanup(func() { produce.Close() })
	return &workerMaps{hash: hash, ring: ring, produce: produce}
}

// produceWhile writes a ring buffer record every 20 ms until stop closes.
func (m *workerMaps) produceWhile(t *testing.T, stop <-chan struct{}) {
	for {
		if _, err := m.produce.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
			t.Errorf("run ring buffer producer: %v", err)
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var (
	workerBinaryOnce sync.Once
	workerBinary     string
	workerBinaryErr  error
)

// traversableDir makes a directory every user can enter and read.
func traversableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// binaryForWorker copies the test binary where the worker's uid can run
// it: go test keeps it in a 0700 directory.
func binaryForWorker(t *testing.T) string {
	t.Helper()
	workerBinaryOnce.Do(func() {
		var dir string
		dir, workerBinaryErr = os.MkdirTemp("", "pci-segment-sandbox-bin-")
		if workerBinaryErr != nil {
			return
		}
		if workerBinaryErr = os.Chmod(dir, 0o755); workerBinaryErr != nil {
			return
		}
		var self []byte
		if self, workerBinaryErr = os.ReadFile("/proc/self/exe"); workerBinaryErr != nil {
			return
		}
		workerBinary = filepath.Join(dir, "sandbox.test")
		workerBinaryErr = os.WriteFile(workerBinary, self, 0o755)
	})
	if workerBinaryErr != nil {
		t.Fatalf("copy the test binary for the worker's uid: %v", workerBinaryErr)
	}
	return workerBinary
}

// runConfined runs scenario in a child with the worker's credentials: uid
// and gid workerUID, no supplementary groups, every capability set empty
// (the forking thread drops its bounding set, and the uid change at exec
// clears the rest), and NoNewPrivs.
func runConfined(t *testing.T, scenario string, m *workerMaps) childResult {
	t.Helper()
	testenv.RequireRoot(t)
	bin := binaryForWorker(t)
	work := traversableDir(t)
	if err := os.Chown(work, workerUID, workerUID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = []string{scenarioEnv + "=" + scenario, workDirEnv + "=" + work, "PATH=/usr/bin:/bin"}
	cmd.Dir = work
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if m != nil {
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(m.hash.FD()), "hash"), os.NewFile(uintptr(m.ring.FD()), "ring")}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: workerUID, Gid: workerUID, Groups: []uint32{}},
		Pdeathsig:  syscall.SIGKILL,
	}
	// The forking thread stays locked and alive until the child ends:
	// the parent-death signal fires when that thread exits.
	started := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		// No UnlockOSThread: the thread's privileges are reduced, so the
		// runtime discards it when this goroutine returns.
		runtime.LockOSThread()
		if err := reduceThread(); err != nil {
			started <- err
			return
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait() // the state says how it ended
	}()
	if err := <-started; err != nil {
		t.Fatalf("start %s child: %v", scenario, err)
	}
	stop := make(chan struct{})
	var producer sync.WaitGroup
	if m != nil {
		producer.Go(func() { m.produceWhile(t, stop) })
	}
	<-waited
	close(stop)
	producer.Wait()
	if ctx.Err() != nil {
		t.Fatalf("%s child did not finish in time:\n%s%s", scenario, stdout.String(), stderr.String())
	}
	return childResult{stdout: stdout.String(), stderr: stderr.String(), state: cmd.ProcessState}
}

// reduceThread empties the calling thread's bounding and ambient sets and
// sets NoNewPrivs on it, as the loader does before it forks the worker.
func reduceThread() error {
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		} else if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
}

func exitCode(s *os.ProcessState) string {
	ws := s.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "exit " + strconv.Itoa(ws.ExitStatus())
}

// requireKilledFor checks that a child died through the SIGSYS reporter for
// the named call, and that nothing it would have done next happened.
func requireKilledFor(t *testing.T, r childResult, syscallName string) {
	t.Helper()
	if got := exitCode(r.state); got != "exit "+strconv.Itoa(ViolationExitStatus) || !KilledByFilter(r.state) {
		t.Fatalf("child ended with %s, want exit %d:\n%s", got, ViolationExitStatus, r)
	}
	var v Violation
	var found bool
	for line := range strings.Lines(r.stderr) {
		if v, found = ParseViolation(line); found {
			break
		}
	}
	nr := int(mustSyscall(t, syscallName))
	if !found || v.Syscall != syscallName || v.Nr != nr {
		t.Fatalf("stderr names %+v (found %v), want %s (%d):\n%s", v, found, syscallName, nr, r)
	}
	if strings.Contains(r.stdout, "survived") {
		t.Fatalf("the child went on after the forbidden call:\n%s", r)
	}
	if !strings.Contains(r.stdout, "confined\n") {
		t.Fatalf("the child did not get as far as the forbidden call:\n%s", r)
	}
}

func TestAllowlistKillsWorkerForSetuidAndExecve(t *testing.T) {
	for _, tc := range []struct{ scenario, syscall string }{
		{"kill:setuid0", "setuid"},
		{"kill:setresuid", "setresuid"},
		{"kill:execve", "execve"},
		{"kill:ptrace", "ptrace"},
		{"kill:unshare", "unshare"},
		{"kill:fork", "clone"},
		{"kill:mmap-exec", "mmap"},
		{"kill:tiocsti", "ioctl"},
		{"kill:socket-unix", "socket"},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			requireKilledFor(t, runConfined(t, tc.scenario, nil), tc.syscall)
		})
	}
}

func TestAllowlistKillsWorkerForMapFreezeWhateverTheHighBits(t *testing.T) {
	for _, scenario := range []string{"kill:freeze", "kill:freeze-high"} {
		t.Run(scenario, func(t *testing.T) {
			m := newWorkerMaps(t)
			requireKilledFor(t, runConfined(t, scenario, m), "bpf")
			// The map the child held is not frozen.
			if err := m.hash.Put(uint32(7), uint64(7)); err != nil {
				t.Fatalf("update after the child's refused freeze: %v", err)
			}
		})
	}
}

func TestAllowlistKillsWholeProcessFromAnyThread(t *testing.T) {
	r := runConfined(t, "kill:setuid0-on-a-thread", nil)
	requireKilledFor(t, r, "setuid")
	if strings.Contains(r.stdout, "main still running") {
		t.Fatalf("the main thread outlived the violation:\n%s", r)
	}
}

func TestAllowlistKillsOtherABIsWithoutAReport(t *testing.T) {
	r := runConfined(t, "kill:x32-getpid", nil)
	if got := exitCode(r.state); got != "signal bad system call" || !KilledByFilter(r.state) {
		t.Fatalf("child ended with %s, want death by SIGSYS:\n%s", got, r)
	}
	if strings.Contains(r.stdout, "survived") || !strings.Contains(r.stdout, "confined\n") {
		t.Fatalf("unexpected output:\n%s", r)
	}
}

func TestAllowlistTortureRunUnderWorkerCredentials(t *testing.T) {
	r := runConfined(t, "torture", newWorkerMaps(t))
	if got := exitCode(r.state); got != "exit 0" || KilledByFilter(r.state) || strings.Contains(r.stderr, ViolationPrefix) {
		t.Fatalf("torture run ended with %s:\n%s", got, r)
	}
	for _, step := range tortureSteps {
		if !strings.Contains(r.stdout, "ok "+step.name+"\n") {
			t.Errorf("step %s did not pass", step.name)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("torture output:\n%s", r)
	}
}

func TestDenylistRefusesIdentityChangesAndFreezeUnderWorkerCredentials(t *testing.T) {
	m := newWorkerMaps(t)
	r := runConfined(t, "denylist", m)
	if got := exitCode(r.state); got != "exit 0" {
		t.Fatalf("denylist child ended with %s:\n%s", got, r)
	}
	if err := m.hash.Put(uint32(7), uint64(7)); err != nil {
		t.Fatalf("update after the child's refused freezes: %v", err)
	}
	if testing.Verbose() {
		t.Logf("%s", r)
	}
}

func TestWithoutAFilterTheWorkerCanCallWhatTheDenylistRefuses(t *testing.T) {
	// The control for the test above: the same credentials, no filter.
	// The calls the kernel allows an unprivileged process succeed here, so
	// their EPERM under the denylist can only come from the filter.
	m := newWorkerMaps(t)
	r := runConfined(t, "unfiltered", m)
	if got := exitCode(r.state); got != "exit 0" {
		t.Fatalf("unfiltered child ended with %s:\n%s", got, r)
	}
	if err := m.hash.Put(uint32(7), uint64(7)); !errors.Is(err, unix.EPERM) {
		t.Fatalf("update after the unfiltered child's freeze: %v, want EPERM (frozen)", err)
	}
}

// Child side.

// runScenario runs in the child and returns its exit status.
func runScenario(s string) int {
	if s == "torture" {
		return runTorture()
	}
	if call, ok := strings.CutPrefix(s, "kill:"); ok {
		return runForbidden(call)
	}
	switch s {
	case "denylist":
		return runIdentityChecks(true)
	case "unfiltered":
		return runIdentityChecks(false)
	}
	fmt.Fprintf(os.Stderr, "unknown scenario %q\n", s)
	return 2
}

func install(p Policy) {
	report, err := Install(p)
	if err != nil {
		fmt.Fprintf(os.Stderr, "install %s: %v\n", p.Name, err)
		os.Exit(2)
	}
	fmt.Printf("confined by %s: %d rules, skipped %v\n", report.Policy, report.Rules, report.Skipped)
	fmt.Println("confined")
}

func rawBPFCmd(cmd uint64, fd int) unix.Errno {
	var attr [128]byte
	*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(fd)
	_, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	return e
}

// forbiddenCalls each make one call the allowlist kills.
var forbiddenCalls = map[string]func() error{
	"setuid0": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
		return e
	},
	"setresuid": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0))
		return e
	},
	"execve": func() error { return unix.Exec("/bin/true", []string{"true"}, nil) },
	"ptrace": func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return e
	},
	"unshare": func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"fork": func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		return e
	},
	"mmap-exec": func() error {
		_, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		return err
	},
	"tiocsti": func() error {
		c := byte('x')
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		return e
	},
	"socket-unix": func() error {
		_, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		return err
	},
	"freeze":      func() error { return rawBPFCmd(unix.BPF_MAP_FREEZE, fdHash) },
	"freeze-high": func() error { return rawBPFCmd(1<<32|unix.BPF_MAP_FREEZE, fdHash) },
	"x32-getpid": func() error {
		_, _, e := unix.RawSyscall(0x40000000|unix.SYS_GETPID, 0, 0, 0)
		return e
	},
}

func runForbidden(name string) int {
	onThread := false
	if n, ok := strings.CutSuffix(name, "-on-a-thread"); ok {
		name, onThread = n, true
	}
	call := forbiddenCalls[name]
	if call == nil {
		fmt.Fprintf(os.Stderr, "unknown forbidden call %q\n", name)
		return 2
	}
	// Busy threads, so that the process has more than the caller's.
	for range 4 {
		go func() {
			for {
				runtime.Gosched()
			}
		}()
	}
	install(WorkerAllowlist())
	if !onThread {
		err := call()
		fmt.Printf("survived %s: %v\n", name, err)
		return 3
	}
	go func() {
		runtime.LockOSThread()
		err := call()
		fmt.Printf("survived %s on a thread: %v\n", name, err)
	}()
	time.Sleep(500 * time.Millisecond)
	fmt.Println("main still running")
	return 3
}

// runIdentityChecks checks, under the denylist or without a filter, the
// calls the denylist refuses with EPERM, with the worker's credentials.
func runIdentityChecks(filtered bool) int {
	if filtered {
		install(WorkerDenylist())
	}
	uid := uintptr(os.Getuid())
	failed := false
	expect := func(name string, got error, denylist, unfiltered error) {
		want := unfiltered
		if filtered {
			want = denylist
		}
		if !errors.Is(got, want) && !(got == nil && want == nil) {
			fmt.Printf("FAIL %s: %v, want %v\n", name, got, want)
			failed = true
			return
		}
		fmt.Printf("ok %s: %v\n", name, got)
	}
	raw := func(nr, a, b, c uintptr) error {
		if _, _, e := unix.RawSyscall(nr, a, b, c); e != 0 {
			return e
		}
		return nil
	}
	// The kernel refuses these to an unprivileged process as well.
	expect("setuid(0)", raw(unix.SYS_SETUID, 0, 0, 0), unix.EPERM, unix.EPERM)
	expect("setresuid(-1, 0, -1)", raw(unix.SYS_SETRESUID, ^uintptr(0), 0, ^uintptr(0)), unix.EPERM, unix.EPERM)
	// These the kernel allows it, so only the filter answers EPERM.
	expect("setuid(own uid)", raw(unix.SYS_SETUID, uid, 0, 0), unix.EPERM, nil)
	expect("setresuid(-1, -1, -1)", raw(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0)), unix.EPERM, nil)
	expect("setgroups(0, NULL)", raw(unix.SYS_SETGROUPS, 0, 0, 0), unix.EPERM, unix.EPERM)
	// BPF_MAP_FREEZE needs no capability on a held fd.
	var freeze error
	for _, high := range []uint64{1 << 32, 0xffffffff << 32, 0} {
		if e := rawBPFCmd(high|unix.BPF_MAP_FREEZE, fdHash); e != 0 {
			freeze = e
		} else {
			freeze = nil
			break // frozen: the other spellings would say EBUSY
		}
	}
	expect("bpf(BPF_MAP_FREEZE | high bits)", freeze, unix.EPERM, nil)
	if failed {
		return 1
	}
	return 0
}

// tortureStep is one part of the torture run; it runs after the filter is
// installed.
type tortureStep struct {
	name string
	run  func(*tortureState) error
}

type tortureState struct {
	work string
	hash *ebpf.Map
	ring *ebpf.Map
}

var tortureSteps = []tortureStep{
	{"adopt_maps", stepAdoptMaps},
	{"map_commands", stepMapCommands},
	{"ring_buffer", stepRingBuffer},
	{"gc_and_free_os_memory", stepGC},
	{"64_goroutines_blocked_in_syscalls", stepBlockedInSyscalls},
	{"timers", stepTimers},
	{"signal_round_trip", stepSignal},
	{"gomaxprocs", stepGOMAXPROCS},
	{"preempt_busy_loops", stepPreemption},
	{"cgo_thread", stepCgoThread},
	{"file_io_and_inotify", stepFiles},
	{"tcp_loopback", stepTCP},
	{"http_server", stepHTTP},
	{"interface_names", stepInterfaces},
	{"isatty_probe", stepIsatty},
	{"every_thread_confined", stepThreads},
}

func runTorture() int {
	st := &tortureState{work: os.Getenv(workDirEnv)}
	install(WorkerAllowlist())
	failed := false
	for _, s := range tortureSteps {
		done := make(chan error, 1)
		go func() { done <- s.run(st) }()
		select {
		case err := <-done:
			if err != nil {
				fmt.Printf("FAIL %s: %v\n", s.name, err)
				failed = true
				continue
			}
			fmt.Printf("ok %s\n", s.name)
		case <-time.After(20 * time.Second):
			fmt.Printf("FAIL %s: no result in 20s\n", s.name)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func stepAdoptMaps(st *tortureState) error {
	var err error
	// As the worker does with the fds it receives: after the filter.
	if st.hash, err = ebpf.NewMapFromFD(fdHash); err != nil {
		return fmt.Errorf("adopt hash map: %w", err)
	}
	if st.ring, err = ebpf.NewMapFromFD(fdRingbuf); err != nil {
		return fmt.Errorf("adopt ring buffer: %w", err)
	}
	return nil
}

func stepMapCommands(st *tortureState) error {
	m := st.hash
	if err := m.Put(uint32(1), uint64(10)); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	var v uint64
	if err := m.Lookup(uint32(1), &v); err != nil || v != 10 {
		return fmt.Errorf("lookup: %d, %v", v, err)
	}
	var next uint32
	if err := m.NextKey(nil, &next); err != nil {
		return fmt.Errorf("next key: %w", err)
	}
	if err := m.Delete(uint32(1)); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	keys, vals := []uint32{10, 11, 12}, []uint64{1, 2, 3}
	if n, err := m.BatchUpdate(keys, vals, nil); err != nil || n != 3 {
		return fmt.Errorf("batch update: %d, %w", n, err)
	}
	if n, err := m.BatchDelete(keys, nil); err != nil || n != 3 {
		return fmt.Errorf("batch delete: %d, %w", n, err)
	}
	return nil
}

func stepRingBuffer(st *tortureState) error {
	rd, err := ringbuf.NewReader(st.ring)
	if err != nil {
		return fmt.Errorf("open reader: %w", err)
	}
	defer rd.Close()
	rd.SetDeadline(time.Now().Add(10 * time.Second))
	rec, err := rd.Read()
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if len(rec.RawSample) != 8 || *(*uint64)(unsafe.Pointer(&rec.RawSample[0])) != 0x5ec {
		return fmt.Errorf("record %x, want the producer's 0x5ec", rec.RawSample)
	}
	return nil
}

var sink [][]byte

func stepGC(*tortureState) error {
	for i := range 200 {
		sink = append(sink, make([]byte, 64<<10))
		if i%50 == 49 {
			sink = nil
			runtime.GC()
		}
	}
	sink = nil
	debug.FreeOSMemory()
	return nil
}

func stepBlockedInSyscalls(*tortureState) error {
	const n = 64
	fds := make([]int, n)
	for i := range fds {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC) // blocking
		if err != nil {
			return fmt.Errorf("eventfd: %w", err)
		}
		defer unix.Close(fd)
		fds[i] = fd
	}
	var blocked, woke atomic.Int32
	var wg sync.WaitGroup
	for _, fd := range fds {
		wg.Go(func() {
			var buf [8]byte
			blocked.Add(1)
			// A plain read(2) holds its thread until the write below, so
			// the runtime must start new threads to run the others.
			if _, err := unix.Read(fd, buf[:]); err == nil {
				woke.Add(1)
			}
		})
	}
	for blocked.Load() < n {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, fd := range fds {
		if _, err := unix.Write(fd, one); err != nil {
			return fmt.Errorf("wake: %w", err)
		}
	}
	wg.Wait()
	if woke.Load() != n {
		return fmt.Errorf("%d of %d reads returned", woke.Load(), n)
	}
	if len(tasks) < n {
		return fmt.Errorf("%d threads while %d goroutines were blocked", len(tasks), n)
	}
	return nil
}

func stepTimers(*tortureState) error {
	fired := make(chan struct{})
	time.AfterFunc(5*time.Millisecond, func() { close(fired) })
	tk := time.NewTicker(time.Millisecond)
	for range 20 {
		<-tk.C
	}
	tk.Stop()
	<-fired
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	<-ctx.Done()
	time.Sleep(time.Millisecond)
	return nil
}

func stepSignal(*tortureState) error {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	defer signal.Stop(c)
	if err := unix.Kill(os.Getpid(), unix.SIGUSR1); err != nil {
		return fmt.Errorf("kill(self, SIGUSR1): %w", err)
	}
	select {
	case <-c:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("SIGUSR1 not delivered")
	}
}

func stepGOMAXPROCS(*tortureState) error {
	prev := runtime.GOMAXPROCS(1)
	runtime.GOMAXPROCS(4 * runtime.NumCPU())
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { runtime.Gosched() })
	}
	wg.Wait()
	runtime.GOMAXPROCS(prev)
	return nil
}

//go:noinline
func spin(stop *atomic.Bool) (n int) {
	for !stop.Load() {
		n++
	}
	return n
}

func stepPreemption(*tortureState) error {
	// With one P and busy loops that never call anything, the sleeping
	// goroutine only runs again if the runtime preempts a loop, which it
	// does with a signal to the loop's thread (tgkill).
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { spin(&stop) })
	}
	runtime.Gosched()
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	return nil
}

func stepCgoThread(*tortureState) error {
	tid, err := cthread.Run()
	if err != nil {
		return err
	}
	if tid <= 0 || tid == unix.Gettid() {
		return fmt.Errorf("thread ran as tid %d", tid)
	}
	return nil
}

func stepFiles(st *tortureState) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("inotify_init1: %w", err)
	}
	defer unix.Close(fd)
	wd, err := unix.InotifyAddWatch(fd, st.work, unix.IN_CREATE|unix.IN_MOVED_TO)
	if err != nil {
		return fmt.Errorf("inotify_add_watch: %w", err)
	}
	path := filepath.Join(st.work, "audit.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("record\n"); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "record\n" {
		return fmt.Errorf("read back %q, %v", b, err)
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if entries, err := os.ReadDir(st.work); err != nil || len(entries) != 1 {
		return fmt.Errorf("read dir: %v, %v", entries, err)
	}
	var buf [unix.SizeofInotifyEvent + unix.PathMax]byte
	if n, err := unix.Read(fd, buf[:]); err != nil || n < unix.SizeofInotifyEvent {
		return fmt.Errorf("inotify read: %d, %v", n, err)
	}
	if _, err := unix.InotifyRmWatch(fd, uint32(wd)); err != nil {
		return fmt.Errorf("inotify_rm_watch: %w", err)
	}
	// What the worker reads from /proc and /sys.
	for _, p := range []string{"/proc/self/status", "/proc/self/fdinfo/" + strconv.Itoa(fdHash), "/sys/devices/system/cpu/possible"} {
		if _, err := os.ReadFile(p); err != nil {
			return err
		}
	}
	return nil
}

func echo(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			// Not io.Copy: between two sockets it splices through a
			// pipe, which the worker never does and the filter kills.
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

func stepTCP(*tortureState) error {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "[::1]:0" && errors.Is(err, unix.EADDRNOTAVAIL) {
				continue // no IPv6 loopback here
			}
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		go echo(ln)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			ln.Close()
			return fmt.Errorf("dial %s: %w", ln.Addr(), err)
		}
		_, err = c.Write([]byte("ping"))
		buf := make([]byte, 4)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		c.Close()
		ln.Close()
		if err != nil || string(buf) != "ping" {
			return fmt.Errorf("echo on %s: %q, %v", addr, buf, err)
		}
	}
	return nil
}

func stepHTTP(*tortureState) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "metrics\n") }),
		ReadHeaderTimeout: 5 * time.Second,
		MaxHeaderBytes:    1024,
	}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "metrics\n" {
		return fmt.Errorf("GET: %q", body)
	}
	// Bad requests: the server answers 400, or 431 to oversized headers,
	// which it follows with a half-close (shutdown).
	for _, tc := range []struct{ request, status string }{
		{"NOT HTTP\x00\r\n\r\n", "400"},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", "431"},
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		_, err = io.WriteString(c, tc.request)
		var line string
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err = bufio.NewReader(c).ReadString('\n')
		}
		c.Close()
		if err != nil || !strings.Contains(line, tc.status) {
			return fmt.Errorf("bad request: %q, %v; want %s", line, err, tc.status)
		}
	}
	return nil
}

func stepInterfaces(*tortureState) error {
	lo, err := net.InterfaceByIndex(1)
	if err != nil {
		return err
	}
	if lo.Name != "lo" {
		return fmt.Errorf("interface 1 is %q", lo.Name)
	}
	return nil
}

func stepIsatty(*tortureState) error {
	if _, err := unix.IoctlGetTermios(2, unix.TCGETS); !errors.Is(err, unix.ENOTTY) {
		return fmt.Errorf("TCGETS on stderr: %v, want ENOTTY", err)
	}
	return nil
}

func stepThreads(*tortureState) error {
	p, err := privilege.ReadProcess(os.Getpid())
	if err != nil {
		return err
	}
	if len(p.Threads) < 2 {
		return fmt.Errorf("%d threads", len(p.Threads))
	}
	worker := privilege.IDs{Real: workerUID, Effective: workerUID, Saved: workerUID, FS: workerUID}
	for _, th := range p.Threads {
		if th.Seccomp != privilege.SeccompFilter || th.SeccompFilters < 1 || !th.NoNewPrivs {
			return fmt.Errorf("thread %d: seccomp %v, %d filters, NoNewPrivs %v", th.TID, th.Seccomp, th.SeccompFilters, th.NoNewPrivs)
		}
		if th.UID != worker || th.GID != worker || len(th.Groups) != 0 {
			return fmt.Errorf("thread %d: uid %+v gid %+v groups %v", th.TID, th.UID, th.GID, th.Groups)
		}
		if th.CapInh|th.CapPrm|th.CapEff|th.CapBnd|th.CapAmb != 0 {
			return fmt.Errorf("thread %d holds capabilities: inh %#x prm %#x eff %#x bnd %#x amb %#x",
				th.TID, th.CapInh, th.CapPrm, th.CapEff, th.CapBnd, th.CapAmb)
		}
	}
	fmt.Printf("%d threads, all filtered, uid and gid %d, no capabilities, NoNewPrivs\n", len(p.Threads), workerUID)
	return nil
}
