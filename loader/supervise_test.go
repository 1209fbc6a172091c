package loader

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
	"github.com/pci-segment/pci-segment/testenv"
)

// The test binary doubles as a fake worker (PCI_SEGMENT_TEST_FAKE_WORKER
// set) that breaks the protocol once, as its --labels argument says,
// counting its incarnations in a marker in its --audit-dir: the first
// misbehaves once its policy is applied; for an early misbehaviour, the
// first applies and exits, and the second misbehaves before applying, when
// the loader has attached already. Later ones behave.
const fakeWorkerEnv = "PCI_SEGMENT_TEST_FAKE_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeWorkerEnv) != "" {
		os.Exit(fakeWorker(argAfter("--labels"), filepath.Join(argAfter("--audit-dir"), "misbehaved")))
	}
	os.Exit(m.Run())
}

func argAfter(flag string) string {
	for i, a := range os.Args[:len(os.Args)-1] {
		if a == flag {
			return os.Args[i+1]
		}
	}
	return ""
}

func header(t ipc.Type, n int) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(t))
	return binary.LittleEndian.AppendUint16(b, uint16(n))
}

// misbehaviours are what a compromised worker might send or do once it
// runs. Each returns the text the loader's log must then show.
var misbehaviours = map[string]struct {
	do    func(fd int) error
	want  string
	early bool // before Applied, in the second incarnation
}{
	"unknown type": {func(fd int) error { return unix.Sendmsg(fd, header(99, 0), nil, nil, 0) }, "unknown message type 99", false},
	"oversized": {func(fd int) error {
		return unix.Sendmsg(fd, append(header(ipc.TypeAlive, 0), make([]byte, 8000)...), nil, nil, 0)
	}, "message over 4096 bytes", false},
	"truncated": {func(fd int) error { return unix.Sendmsg(fd, []byte{4}, nil, nil, 0) }, "shorter than its header", false},
	"loader's message": {func(fd int) error {
		// Setup travels the other way.
		b := append(binary.LittleEndian.AppendUint64(header(ipc.TypeSetup, 61), 1), make([]byte, 48)...)
		return unix.Sendmsg(fd, append(b, "addr4"...), unix.UnixRights(0), nil, 0)
	}, "setup not permitted", false},
	"out of state": {func(fd int) error {
		// A worker message, but Alive is for a worker with a policy in
		// force, and this one has applied none yet.
		return unix.Sendmsg(fd, header(ipc.TypeAlive, 0), nil, nil, 0)
	}, "alive not permitted", true},
	"repeated hello": {func(fd int) error {
		return unix.Sendmsg(fd, append(binary.LittleEndian.AppendUint32(header(ipc.TypeHello, 5), ipc.Version), 0), nil, nil, 0)
	}, "hello not permitted", false},
	"extra fds": {func(fd int) error { return unix.Sendmsg(fd, header(ipc.TypeAlive, 0), unix.UnixRights(0), nil, 0) }, "alive: 1 fds", false},
	"generation of its own": {func(fd int) error {
		// What would make every later worker's generation look stale.
		b := binary.LittleEndian.AppendUint64(header(ipc.TypeApplied, 40), 1<<64-1)
		return unix.Sendmsg(fd, append(b, make([]byte, 32)...), nil, nil, 0)
	}, "the loader assigned 2", false},
	"alive flood": {func(fd int) error {
		for range 1000 {
			if err := unix.Sendmsg(fd, header(ipc.TypeAlive, 0), nil, nil, 0); err != nil {
				return err
			}
		}
		return nil
	}, "more than 30 alive messages", false},
	"seccomp violation": {func(int) error {
		// The worker's real filter, then a call it forbids.
		pol, err := sandbox.WorkerPolicy(sandbox.ModeAllowlist)
		if err != nil {
			return err
		}
		if _, err := sandbox.Install(pol); err != nil {
			return err
		}
		return syscall.Setuid(0)
	}, "killed by its seccomp filter for calling setuid", false},
}

// fakeWorker speaks the protocol as the worker does, applying nothing.
func fakeWorker(mode, marker string) int {
	conn, err := ipc.FromFD(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	if err := conn.Send(ctx, ipc.Hello{Version: ipc.Version}); err != nil {
		return 1
	}
	m, err := conn.Expect(ctx, ipc.TypeSetup)
	if err != nil {
		return 1
	}
	ipc.CloseFDs(m)
	before, _ := os.ReadFile(marker)
	incarnation := len(before)
	if err := os.WriteFile(marker, append(before, '.'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "marker:", err)
	}
	mb := misbehaviours[mode]
	misbehave := func() {
		if err := mb.do(IPCFDForTest); err != nil {
			fmt.Fprintln(os.Stderr, "misbehave:", err)
		}
	}
	if mb.early && incarnation == 1 {
		misbehave()
	}
	if err := conn.Send(ctx, ipc.Applied{Generation: m.(ipc.Setup).Generation}); err != nil {
		return 1
	}
	switch {
	case mb.early && incarnation == 0:
		return 0 // make way for the one that misbehaves early
	case !mb.early && incarnation == 0:
		misbehave()
	}
	// Stay until the loader ends this process.
	select {}
}

// IPCFDForTest is the worker's end of the channel.
const IPCFDForTest = 3

// syncBuffer is a log sink the test reads while the supervisor writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// executableCopy puts the test binary where another user can run it.
func executableCopy(t *testing.T) string {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(dir, "pci-segment")
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return exe
}

func TestProtocolViolationsRestartTheWorker(t *testing.T) {
	testenv.RequireRoot(t)
	exe := executableCopy(t)
	t.Setenv(fakeWorkerEnv, "1")
	for mode, mb := range misbehaviours {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			objs, err := bpf.LoadWithSizes(bpf.DefaultSizes)
			if err != nil {
				t.Fatal(err)
			}
			defer objs.Close()
			readOnly, err := pins.ReadOnlyMaps(objs, "/sys/fs/bpf")
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				for _, m := range readOnly {
					m.Close()
				}
			}()
			// The fake worker, as nobody, leaves its marker here.
			dir := t.TempDir()
			for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
				os.Chmod(d, 0o777)
			}
			keys, err := os.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer keys.Close()
			out := &syncBuffer{}
			applied := 0
			sup := &supervisor{
				keys:      keys,
				exe:       exe,
				cfg:       Config{Sizes: bpf.DefaultSizes, WorkerArgs: []string{"--labels", mode, "--audit-dir", dir}},
				acct:      privilege.Account{User: "nobody", Group: "nogroup", Identity: privilege.Identity{UID: 65534, GID: 65534}},
				maps:      &objs.DatapathMaps,
				readOnly:  readOnly,
				log:       hclog.New(&hclog.LoggerOptions{Output: out, Level: hclog.Info}),
				onApplied: func() error { applied++; return nil },
				enforcing: func(uint32) []ipc.Message { return nil },
				onLinks:   func() []ipc.Message { return nil },
			}
			sigc := make(chan os.Signal, 1)
			type served struct {
				sig os.Signal
				err error
			}
			done := make(chan served)
			go func() {
				sig, err := sup.serve(sigc)
				done <- served{sig, err}
			}()
			// The last replacement must wait out its backoff.
			restarts := 1
			if mb.early {
				restarts = 2
			}
			deadline := time.Now().Add(20 * time.Second)
			for strings.Count(out.String(), "policy applied by worker") < 2 {
				if time.Now().After(deadline) {
					sigc <- syscall.SIGTERM
					<-done
					t.Fatalf("no replacement worker applied a policy:\n%s", out)
				}
				time.Sleep(50 * time.Millisecond)
			}
			sigc <- syscall.SIGTERM
			if r := <-done; r.sig != syscall.SIGTERM || r.err != nil {
				t.Errorf("serve returned %v, %v", r.sig, r.err)
			}
			log := out.String()
			backoff := backoffAfter(restarts - 1)
			for _, want := range []string{"worker replaced", mb.want, fmt.Sprintf("restarts=%d", restarts),
				"generation=2", "backoff=" + backoff.String()} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			replaced, restarted := lastLogged(t, log, "worker replaced"), lastLogged(t, log, "worker started")
			if gap := restarted.Sub(replaced); gap < backoff {
				t.Errorf("the replacement started %v after the violation, within its backoff of %v", gap, backoff)
			}
			// Attaching happens once: a replacement never detaches or
			// re-attaches, so enforcement has no gap.
			if applied != 1 {
				t.Errorf("onApplied ran %d times, want once", applied)
			}
		})
	}
}

// lastLogged is the time of the last log line containing what.
func lastLogged(t *testing.T, log, what string) time.Time {
	t.Helper()
	var at time.Time
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		stamp, _, _ := strings.Cut(line, " ")
		var err error
		if at, err = time.Parse("2006-01-02T15:04:05.000Z0700", stamp); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
	}
	if at.IsZero() {
		t.Fatalf("no log line has %q", what)
	}
	return at
}

func TestBackoffDoublesUpToItsCap(t *testing.T) {
	var got []time.Duration
	for f := range 9 {
		got = append(got, backoffAfter(f))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second,
		32 * time.Second, time.Minute, time.Minute, time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("backoff over consecutive failures %v, want %v", got, want)
	}
}

// A binary with file capabilities started the way the worker is gains
// none: the bounding set is empty and NoNewPrivs is set before exec. The
// check runs in a child test process whose every thread may pass
// cap_net_admin on (setpriv --inh-caps), so that only the spawn's own
// reduction stands between the binary and the capability.
func TestWorkerCredentialsDefeatFileCapabilities(t *testing.T) {
	testenv.RequireRoot(t)
	if os.Getenv(inheritingEnv) == "" {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("setpriv", "--inh-caps=+net_admin", self,
			"-test.run=^TestWorkerCredentialsDefeatFileCapabilities$", "-test.v")
		cmd.Env = append(os.Environ(), inheritingEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS") {
			t.Fatalf("child test: %v\n%s", err, out)
		}
		return
	}
	exe := executableCopy(t)
	// security.capability, version 2: cap_net_admin effective and
	// inheritable, as `setcap cap_net_admin+ei` writes it: a process with
	// that capability inheritable would run the binary with it.
	xattr := make([]byte, 20)
	binary.LittleEndian.PutUint32(xattr[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(xattr[8:], 1<<unix.CAP_NET_ADMIN)
	if err := unix.Setxattr(exe, "security.capability", xattr, 0); err != nil {
		t.Fatalf("set file capabilities: %v", err)
	}
	out := &syncBuffer{}
	_, end, err := ipc.Pair()
	if err != nil {
		t.Fatal(err)
	}
	w, err := spawnWorker(exe, nil, []string{capsProbeEnv + "=1"},
		privilege.Account{User: "nobody", Identity: privilege.Identity{UID: 65534, GID: 65534}}, end, hclog.New(&hclog.LoggerOptions{Output: out}))
	end.Close()
	if err != nil {
		t.Fatal(err)
	}
	<-w.done
	if w.err != nil {
		t.Fatalf("probe: %v\n%s", w.err, out)
	}
	if got := out.String(); !strings.Contains(got, `output="CapEff=0 CapPrm=0"`) {
		t.Errorf("a cap_net_admin+ei binary started as the worker has %q, want no capabilities", got)
	}

	// The control: the same binary, started as the same user by a plain
	// setuid and exec, without the spawn's reduction, gains the
	// capability. Without this, a mount that ignores file capabilities
	// (nosuid) would pass the check above for the wrong reason.
	ctl := exec.Command(exe)
	ctl.Env = []string{capsProbeEnv + "=1"}
	ctl.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	got, err := ctl.CombinedOutput()
	if err != nil {
		t.Fatalf("control probe: %v\n%s", err, got)
	}
	want := fmt.Sprintf("CapEff=%x CapPrm=%x", 1<<unix.CAP_NET_ADMIN, 1<<unix.CAP_NET_ADMIN)
	if strings.TrimSpace(string(got)) != want {
		t.Errorf("control: the binary started without the reduction has %q, want %q", got, want)
	}
}

// inheritingEnv marks the child test process started under setpriv.
const inheritingEnv = "PCI_SEGMENT_TEST_INHERITING"

// capsProbeEnv makes the test binary print its capability sets and exit.
const capsProbeEnv = "PCI_SEGMENT_TEST_CAPS_PROBE"

func init() {
	if os.Getenv(capsProbeEnv) == "" {
		return
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("CapEff=%x CapPrm=%x\n", uint64(data[1].Effective)<<32|uint64(data[0].Effective),
		uint64(data[1].Permitted)<<32|uint64(data[0].Permitted))
	os.Exit(0)
}
