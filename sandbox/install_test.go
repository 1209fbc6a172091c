package sandbox

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/testenv"
)

// A seccomp filter cannot be removed, so the denylist is installed in a
// child: this test binary run again, as root, with helperEnv set and only
// TestHelperProcess selected. As root the kernel would allow most of the
// refused calls, which makes an EPERM the filter's. The child runs the
// checks as subtests and the parent requires each of them to have passed. A
// second child runs the same refused calls without the filter and requires
// that none of them answers EPERM there. The allowlist, and the denylist
// under the worker's own credentials, are tested in confined_test.go.

const helperEnv = "PCI_SEGMENT_SANDBOX_HELPER"

// Values of helperEnv.
const (
	helperFiltered = "filtered"
	helperControl  = "control"
)

// childCheck runs in the filtered child after the filter is installed.
type childCheck struct {
	name string
	run  func(t *testing.T, m *ebpf.Map)
}

var childChecks = []childCheck{
	{"refused_syscalls_answer_EPERM", checkRefusedSyscalls},
	{"bpf_forbidden_commands_answer_EPERM_whatever_the_high_bits", checkForbiddenBPFCommands},
	{"map_freeze_refused_and_map_still_updatable", checkFreezeRefused},
	{"bpf_map_commands_still_work", checkMapCommands},
	{"go_runtime_still_works", checkGoRuntime},
	{"every_thread_is_filtered", checkAllThreadsFiltered},
}

var controlChecks = []childCheck{
	{"refused_syscalls_do_not_answer_EPERM_unfiltered", controlRefusedSyscalls},
	{"bpf_forbidden_commands_do_not_answer_EPERM_unfiltered", controlForbiddenBPFCommands},
	{"kernel_ignores_high_bits_of_the_bpf_command", controlFreezeHighBits},
}

func TestDenylistInChildProcessAsRoot(t *testing.T) {
	testenv.RequireRoot(t)
	runChild(t, helperFiltered, childChecks)
}

func TestRefusedCallsSucceedOrFailOtherwiseWithoutTheFilter(t *testing.T) {
	testenv.RequireRoot(t)
	runChild(t, helperControl, controlChecks)
}

func runChild(t *testing.T, mode string, checks []childCheck) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s child: %v\n%s", mode, err, out)
	}
	for _, c := range append([]childCheck{{name: ""}}, checks...) {
		want := "--- PASS: TestHelperProcess"
		if c.name != "" {
			want += "/" + c.name
		}
		if !bytes.Contains(out, []byte(want+" ")) {
			t.Errorf("%s child output lacks %q", mode, want)
		}
	}
	if t.Failed() {
		t.Logf("%s child output:\n%s", mode, out)
	}
}

func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		return // only meaningful as the child of TestDenylistInChildProcessAsRoot
	}
	// The worker receives its map fds before it confines itself; here the
	// child creates one while it still may.
	m := newTestMap(t)
	checks := controlChecks
	if mode == helperFiltered {
		report, err := Install(WorkerDenylist())
		if err != nil {
			t.Fatalf("install worker denylist: %v", err)
		}
		t.Logf("filter installed: %d rules, skipped %v", report.Rules, report.Skipped)
		checks = childChecks
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) { c.run(t, m) })
	}
}

func newTestMap(t *testing.T) *ebpf.Map {
	t.Helper()
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 64})
	if err != nil {
		t.Fatalf("create test map: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func errnoOf(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// refusedCalls are calls the worker filter refuses, with arguments that,
// unfiltered and as root, succeed harmlessly or fail with another errno.
var refusedCalls = []struct {
	name string
	call func() error
	// noControl marks a call whose success would harm the control child.
	noControl bool
}{
	{name: "ptrace(PTRACE_TRACEME)", noControl: true, call: func() error {
		// Unfiltered, the child would stop at every signal for a tracer
		// that never comes.
		_, _, e := unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		return errnoOf(e)
	}},
	{name: "ptrace(PTRACE_PEEKDATA, init)", call: func() error {
		var word uintptr
		_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKDATA, 1, 0, uintptr(unsafe.Pointer(&word)), 0, 0)
		return errnoOf(e)
	}},
	{name: "process_vm_readv(self, nothing)", call: func() error {
		_, _, e := unix.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(os.Getpid()), 0, 0, 0, 0, 0)
		return errnoOf(e)
	}},
	{name: "mount(tmpfs on a missing path)", call: func() error {
		return unix.Mount("none", "/nonexistent/pci-segment", "tmpfs", 0, "")
	}},
	{name: "clone(CLONE_NEWUSER)", noControl: true, call: func() error {
		pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if e == 0 && pid == 0 {
			// The unfiltered child: leave at once.
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
		if e == 0 {
			unix.Wait4(int(pid), nil, 0, nil)
		}
		return errnoOf(e)
	}},
	{name: "ioctl(stdin, TIOCSTI)", call: func() error {
		c := byte('x')
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
		return errnoOf(e)
	}},
	{name: "umount2(missing path)", call: func() error { return unix.Unmount("/nonexistent/pci-segment", 0) }},
	{name: "unshare(CLONE_NEWUTS)", call: func() error {
		// On a thread of its own, which the runtime ends when the goroutine
		// returns still locked, so an unfiltered success changes nothing else.
		errc := make(chan error)
		go func() {
			runtime.LockOSThread()
			errc <- unix.Unshare(unix.CLONE_NEWUTS)
		}()
		return <-errc
	}},
	{name: "setns(-1)", call: func() error { return unix.Setns(-1, 0) }},
	{name: "open_tree(missing path)", call: func() error {
		_, err := unix.OpenTree(unix.AT_FDCWD, "/nonexistent/pci-segment", unix.OPEN_TREE_CLOEXEC)
		return err
	}},
	{name: "fsopen(unknown filesystem)", call: func() error {
		_, err := unix.Fsopen("pci-segment-nofs", unix.FSOPEN_CLOEXEC)
		return err
	}},
	{name: "chroot(missing path)", call: func() error { return unix.Chroot("/nonexistent/pci-segment") }},
	{name: "setuid(own uid)", call: func() error {
		// Raw, on this thread only: unix.Setuid would go to every thread.
		_, _, e := unix.RawSyscall(unix.SYS_SETUID, uintptr(os.Getuid()), 0, 0)
		return errnoOf(e)
	}},
	{name: "setresgid(unchanged)", call: func() error {
		_, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), ^uintptr(0), ^uintptr(0))
		return errnoOf(e)
	}},
	{name: "personality(query)", call: func() error {
		_, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
		return errnoOf(e)
	}},
	{name: "keyctl(thread keyring id)", call: func() error {
		_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_THREAD_KEYRING, 0, 0, 0)
		return err
	}},
	{name: "userfaultfd", call: func() error {
		fd, _, e := unix.RawSyscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoOf(e)
	}},
	{name: "perf_event_open(NULL)", call: func() error {
		_, _, e := unix.Syscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0, 0)
		return errnoOf(e)
	}},
	{name: "init_module(empty)", call: func() error { return unix.InitModule(nil, "") }},
	{name: "reboot(bad magic)", call: func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_REBOOT, 0, 0, 0, 0, 0, 0)
		return errnoOf(e)
	}},
	{name: "swapoff(missing path)", call: func() error {
		p, _ := unix.BytePtrFromString("/nonexistent/pci-segment")
		_, _, e := unix.RawSyscall(unix.SYS_SWAPOFF, uintptr(unsafe.Pointer(p)), 0, 0)
		return errnoOf(e)
	}},
	{name: "open_by_handle_at(-1, NULL)", call: func() error {
		_, _, e := unix.Syscall(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)
		return errnoOf(e)
	}},
}

func checkRefusedSyscalls(t *testing.T, _ *ebpf.Map) {
	for _, c := range refusedCalls {
		if err := c.call(); !errors.Is(err, unix.EPERM) {
			t.Errorf("%s: got %v, want EPERM", c.name, err)
		}
	}
}

func controlRefusedSyscalls(t *testing.T, _ *ebpf.Map) {
	for _, c := range refusedCalls {
		if c.noControl {
			continue
		}
		err := c.call()
		if errors.Is(err, unix.EPERM) {
			t.Errorf("%s: EPERM without a filter, so the filtered test proves nothing", c.name)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

// bpfAttr is large enough for every command's attribute union the tests use;
// the kernel accepts a shorter union as long as it reads zeros past it.
type bpfAttr [128]byte

func rawBPF(cmd uint64, attr *bpfAttr) (uintptr, unix.Errno) {
	r, _, e := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
	return r, e
}

func mapFDAttr(m *ebpf.Map) *bpfAttr {
	var a bpfAttr
	*(*uint32)(unsafe.Pointer(&a[0])) = uint32(m.FD())
	return &a
}

// forbiddenBPFCommands are bpf(2) commands the filter refuses. onMap ones
// get the map's fd as their first attribute field (so a FREEZE let through
// shows in checkFreezeRefused); the others a zeroed attribute, on which as
// root each fails harmlessly or, for BPF_ENABLE_STATS, returns an fd.
var forbiddenBPFCommands = []struct {
	name  string
	cmd   uint64
	onMap bool
}{
	{"BPF_MAP_CREATE", unix.BPF_MAP_CREATE, false},
	{"BPF_PROG_LOAD", unix.BPF_PROG_LOAD, false},
	{"BPF_OBJ_PIN", unix.BPF_OBJ_PIN, false},
	{"BPF_OBJ_GET", unix.BPF_OBJ_GET, false},
	{"BPF_PROG_ATTACH", unix.BPF_PROG_ATTACH, false},
	{"BPF_PROG_TEST_RUN", unix.BPF_PROG_TEST_RUN, false},
	{"BPF_BTF_LOAD", unix.BPF_BTF_LOAD, false},
	{"BPF_MAP_LOOKUP_AND_DELETE_ELEM", unix.BPF_MAP_LOOKUP_AND_DELETE_ELEM, true},
	{"BPF_MAP_FREEZE", unix.BPF_MAP_FREEZE, true},
	{"BPF_LINK_CREATE", unix.BPF_LINK_CREATE, false},
	{"BPF_ENABLE_STATS", unix.BPF_ENABLE_STATS, false},
	{"BPF_TOKEN_CREATE (36)", 36, false},
	{"-1 as int", 0xffffffff, false},
	{"first unassigned command (1000)", 1000, false},
}

var highHalves = []uint64{0, 1 << 32, 0xffffffff << 32}

func attrFor(m *ebpf.Map, onMap bool) *bpfAttr {
	if onMap {
		return mapFDAttr(m)
	}
	return new(bpfAttr)
}

func checkForbiddenBPFCommands(t *testing.T, m *ebpf.Map) {
	for _, c := range forbiddenBPFCommands {
		for _, high := range highHalves {
			if _, e := rawBPF(high|c.cmd, attrFor(m, c.onMap)); e != unix.EPERM {
				t.Errorf("bpf(%s | %#x): errno %v, want EPERM", c.name, high, e)
			}
		}
	}
}

func controlForbiddenBPFCommands(t *testing.T, _ *ebpf.Map) {
	for _, c := range forbiddenBPFCommands {
		for _, high := range highHalves {
			// A fresh map each time: an update on a frozen map is EPERM.
			m := newTestMap(t)
			r, e := rawBPF(high|c.cmd, attrFor(m, c.onMap))
			if e == unix.EPERM {
				t.Errorf("bpf(%s | %#x): EPERM without a filter, so the filtered test proves nothing", c.name, high)
			}
			if e == 0 && !c.onMap {
				unix.Close(int(r)) // BPF_ENABLE_STATS returned an fd
			}
			t.Logf("bpf(%s | %#x): %d, %v", c.name, high, r, e)
		}
	}
}

// controlFreezeHighBits shows why the filter masks: the kernel reads the
// command as an int, so BPF_MAP_FREEZE with bit 32 set freezes the map.
func controlFreezeHighBits(t *testing.T, _ *ebpf.Map) {
	m := newTestMap(t)
	if _, e := rawBPF(1<<32|unix.BPF_MAP_FREEZE, mapFDAttr(m)); e != 0 {
		t.Fatalf("bpf(BPF_MAP_FREEZE | 1<<32) unfiltered: errno %v, want success", e)
	}
	if err := m.Put(uint32(1), uint64(1)); !errors.Is(err, unix.EPERM) {
		t.Fatalf("update after an unfiltered freeze: %v, want EPERM (frozen)", err)
	}
}

func checkFreezeRefused(t *testing.T, m *ebpf.Map) {
	for _, cmd := range []uint64{unix.BPF_MAP_FREEZE, 1<<32 | unix.BPF_MAP_FREEZE} {
		if _, e := rawBPF(cmd, mapFDAttr(m)); e != unix.EPERM {
			t.Errorf("bpf(%#x) on a map fd: errno %v, want EPERM", cmd, e)
		}
	}
	// cilium/ebpf answers the EPERM with a feature probe that creates a map,
	// is refused too, and reports "not supported": any error will do here.
	if err := m.Freeze(); err == nil {
		t.Error("Map.Freeze succeeded")
	}
	if err := m.Put(uint32(99), uint64(1)); err != nil {
		t.Fatalf("update after refused freezes: %v", err)
	}
	if err := m.Delete(uint32(99)); err != nil {
		t.Fatalf("delete after refused freezes: %v", err)
	}
}

func checkMapCommands(t *testing.T, m *ebpf.Map) {
	// UPDATE, LOOKUP, GET_NEXT_KEY, DELETE.
	if err := m.Put(uint32(1), uint64(10)); err != nil {
		t.Fatalf("update: %v", err)
	}
	var v uint64
	if err := m.Lookup(uint32(1), &v); err != nil || v != 10 {
		t.Fatalf("lookup: %d, %v; want 10", v, err)
	}
	var next uint32
	if err := m.NextKey(nil, &next); err != nil || next != 1 {
		t.Fatalf("next key: %d, %v; want 1", next, err)
	}
	if err := m.Delete(uint32(1)); err != nil {
		t.Fatalf("delete: %v", err)
	}

	// The command number's upper half must not get an allowed call refused.
	key, val := uint32(2), uint64(0)
	if err := m.Put(key, uint64(20)); err != nil {
		t.Fatal(err)
	}
	var attr bpfAttr
	*(*uint32)(unsafe.Pointer(&attr[0])) = uint32(m.FD())
	*(*uint64)(unsafe.Pointer(&attr[8])) = uint64(uintptr(unsafe.Pointer(&key)))
	*(*uint64)(unsafe.Pointer(&attr[16])) = uint64(uintptr(unsafe.Pointer(&val)))
	if _, e := rawBPF(1<<32|unix.BPF_MAP_LOOKUP_ELEM, &attr); e != 0 || val != 20 {
		t.Fatalf("bpf(BPF_MAP_LOOKUP_ELEM | 1<<32): %d, errno %v; want 20", val, e)
	}
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&val)
	if err := m.Delete(key); err != nil {
		t.Fatal(err)
	}

	// OBJ_GET_INFO_BY_FD, which is how the worker adopts a received fd.
	info, err := m.Info()
	if err != nil || info.Type != ebpf.Hash {
		t.Fatalf("info: %+v, %v", info, err)
	}
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		t.Fatalf("NewMapFromFD: %v", err)
	}
	defer adopted.Close()

	// The four batch commands.
	keys := []uint32{10, 11, 12, 13}
	vals := []uint64{100, 110, 120, 130}
	if n, err := adopted.BatchUpdate(keys, vals, nil); err != nil || n != len(keys) {
		t.Fatalf("batch update: %d, %v", n, err)
	}
	outKeys := make([]uint32, 64)
	outVals := make([]uint64, 64)
	var cursor ebpf.MapBatchCursor
	n, err := adopted.BatchLookup(&cursor, outKeys, outVals, nil)
	if (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) || n != len(keys) {
		t.Fatalf("batch lookup: %d, %v; want %d", n, err, len(keys))
	}
	if n, err := adopted.BatchDelete(keys[:2], nil); err != nil || n != 2 {
		t.Fatalf("batch delete: %d, %v", n, err)
	}
	cursor = ebpf.MapBatchCursor{}
	n, err = adopted.BatchLookupAndDelete(&cursor, outKeys, outVals, nil)
	if (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) || n != 2 {
		t.Fatalf("batch lookup and delete: %d, %v; want 2", n, err)
	}
	if err := adopted.NextKey(nil, &next); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("map not empty after batch lookup and delete: %v", err)
	}
}

func checkGoRuntime(t *testing.T, _ *ebpf.Map) {
	// Goroutines, some pinned so that the runtime has to start threads
	// after the filter is in place.
	var wg sync.WaitGroup
	release := make(chan struct{})
	results := make(chan int, 1000)
	for i := range 1000 {
		wg.Go(func() {
			if i < 8 {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				<-release
			}
			results <- i
		})
	}
	close(release)
	wg.Wait()
	if len(results) != 1000 {
		t.Fatalf("%d goroutines finished, want 1000", len(results))
	}

	// File IO.
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("pci-segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "pci-segment" {
		t.Fatalf("read back %q, %v", b, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	// TCP on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

// checkAllThreadsFiltered runs last, after checkGoRuntime made the runtime
// start threads.
func checkAllThreadsFiltered(t *testing.T, _ *ebpf.Map) {
	p, err := privilege.ReadProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Threads) < 2 {
		t.Fatalf("only %d thread; the check needs several", len(p.Threads))
	}
	for _, th := range p.Threads {
		if th.Seccomp != privilege.SeccompFilter || th.SeccompFilters < 1 || !th.NoNewPrivs {
			t.Errorf("thread %d: seccomp %v, %d filters, NoNewPrivs %v; want filter mode, NoNewPrivs",
				th.TID, th.Seccomp, th.SeccompFilters, th.NoNewPrivs)
		}
	}
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil || !strings.Contains(string(raw), "\nSeccomp:\t2\n") {
		t.Errorf("/proc/self/status lacks \"Seccomp:\\t2\": %v", err)
	}
	t.Logf("%d threads, all in seccomp filter mode", len(p.Threads))
}
