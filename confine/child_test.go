package confine

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/sandbox"
	"github.com/pci-segment/pci-segment/testenv"
)

// Landlock cannot be lifted once applied, so Worker runs in a child: this
// test binary again, started as an unprivileged uid with only
// TestConfinedChild selected and childEnv set. The child runs every check
// once before Worker, where each must succeed (so that a refusal afterwards
// can only come from Landlock, not from file modes or uids), then on
// several threads that existed before Worker, and prints one result line
// per check and thread. The parent compares them with the table.

const childEnv = "PCI_SEGMENT_CONFINE_CHILD"

// childUID is the unprivileged account the child runs as: nobody.
const childUID = 65534

// childThreads is how many threads, locked before Worker, run each check.
const childThreads = 6

// childConfig is what the parent tells the child, as JSON in childEnv.
type childConfig struct {
	Paths Paths
	// Seccomp installs the worker's seccomp allowlist after Worker and
	// WriteReport, as the worker does.
	Seccomp bool
	// PolicyFile is in the policy directory; Outside is a directory anyone
	// may write; Secret a file anyone may read, outside every grant.
	PolicyFile, Outside, Secret string
	// OtherPort is free for a bind; ConnectPort has the parent listening.
	OtherPort, ConnectPort int
	// Outsider is a process of the child's uid outside its Landlock
	// domain, for the signal scope.
	Outsider int
	// MapFD is a per-CPU map the parent created and passed, as the loader
	// passes the counters to the worker.
	MapFD int
}

// result is one line of the child's output after "RESULT ".
type result struct {
	Check  string `json:"check"`
	Phase  string `json:"phase"` // "before" Worker, or "after"
	Thread int    `json:"thread"`
	Err    string `json:"err"` // "" for success
	Errno  int    `json:"errno"`
}

type check struct {
	name string
	// want is the errno after Worker; 0 means it must succeed.
	want syscall.Errno
	// informational checks are logged, not judged: gaps Landlock leaves.
	informational bool
	// underSeccomp is the errno wanted when the worker's seccomp allowlist
	// is installed too, where it differs from want; it makes an
	// informational check a judged one.
	underSeccomp syscall.Errno
	// killedBySeccomp: the allowlist kills the process on this call.
	killedBySeccomp bool
	// noControl checks do not run before Worker, because running them
	// would hide what Worker must prepare.
	noControl bool
	run       func(c childConfig) error
}

var seq atomic.Int64

// confined is set in the child once Worker has returned.
var confined atomic.Bool

func unique(dir, prefix string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1)))
}

func bindTCP(proto, port int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
}

func metricsPortOf(c childConfig) int {
	_, p, _ := net.SplitHostPort(c.Paths.MetricsAddr)
	n, _ := strconv.Atoi(p)
	return n
}

var checks = []check{
	{name: "read a policy file", run: func(c childConfig) error {
		_, err := os.ReadFile(c.PolicyFile)
		return err
	}},
	{name: "list the policy directory", run: func(c childConfig) error {
		_, err := os.ReadDir(filepath.Dir(c.PolicyFile))
		return err
	}},
	{name: "write into the policy directory", want: unix.EACCES, run: func(c childConfig) error {
		return os.WriteFile(unique(filepath.Dir(c.PolicyFile), "w"), []byte("x"), 0o644)
	}},
	{name: "create a file in the audit directory", run: func(c childConfig) error {
		return os.WriteFile(unique(c.Paths.AuditDir, "audit"), []byte("x"), 0o640)
	}},
	{name: "append to a file in the audit directory", run: func(c childConfig) error {
		f, err := os.OpenFile(filepath.Join(c.Paths.AuditDir, "audit.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return err
		}
		_, err = f.WriteString("record\n")
		return errors.Join(err, f.Close())
	}},
	{name: "write the report into the state directory", killedBySeccomp: true, run: func(c childConfig) error {
		return WriteReport(c.Paths.StateDir, Report{PID: os.Getpid()})
	}},
	{name: "make a directory in the state directory", killedBySeccomp: true, run: func(c childConfig) error {
		return os.Mkdir(unique(c.Paths.StateDir, "d"), 0o750)
	}},
	{name: "write outside the audit and state directories", want: unix.EACCES, run: func(c childConfig) error {
		return os.WriteFile(unique(c.Outside, "w"), []byte("x"), 0o644)
	}},
	{name: "create a symbolic link in the state directory", want: unix.EACCES, killedBySeccomp: true, run: func(c childConfig) error {
		return os.Symlink("/etc/shadow", unique(c.Paths.StateDir, "l"))
	}},
	{name: "create a FIFO in the state directory", want: unix.EACCES, killedBySeccomp: true, run: func(c childConfig) error {
		return unix.Mkfifo(unique(c.Paths.StateDir, "f"), 0o600)
	}},
	{name: "read a world-readable file outside the grants", want: unix.EACCES, run: func(c childConfig) error {
		_, err := os.ReadFile(c.Secret)
		return err
	}},
	{name: "read /etc/passwd", want: unix.EACCES, run: func(childConfig) error {
		_, err := os.ReadFile("/etc/passwd")
		return err
	}},
	{name: "read its own /proc status", run: func(childConfig) error {
		_, err := os.ReadFile("/proc/self/status")
		return err
	}},
	{name: "read its threads' /proc status", run: func(childConfig) error {
		_, err := os.ReadFile("/proc/thread-self/status")
		return err
	}},
	{name: "read /proc/stat", run: func(childConfig) error {
		_, err := os.ReadFile("/proc/stat")
		return err
	}},
	{name: "read another process's /proc status", want: unix.EACCES, run: func(childConfig) error {
		_, err := os.ReadFile("/proc/1/status")
		return err
	}},
	{name: "execute a program", want: unix.EACCES, killedBySeccomp: true, run: func(childConfig) error {
		return exec.Command("/bin/true").Run()
	}},
	{name: "bind the metrics port (TCP)", run: func(c childConfig) error {
		return bindTCP(unix.IPPROTO_TCP, metricsPortOf(c))
	}},
	{name: "listen on the metrics address with net.Listen, over classic TCP", run: func(c childConfig) error {
		ln, err := net.Listen("tcp", c.Paths.MetricsAddr)
		if err != nil {
			return err
		}
		defer ln.Close()
		if !confined.Load() {
			return nil
		}
		// Landlock governs only classic TCP: after Worker the listener
		// must not be Multipath TCP.
		raw, err := ln.(*net.TCPListener).SyscallConn()
		if err != nil {
			return err
		}
		var proto int
		var serr error
		if err := raw.Control(func(fd uintptr) { proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) }); err != nil {
			return err
		}
		if serr != nil {
			return serr
		}
		if proto != unix.IPPROTO_TCP {
			return fmt.Errorf("listener protocol %d, want IPPROTO_TCP (%d)", proto, unix.IPPROTO_TCP)
		}
		return nil
	}},
	{name: "bind another port (TCP)", want: unix.EACCES, run: func(c childConfig) error {
		return bindTCP(unix.IPPROTO_TCP, c.OtherPort)
	}},
	{name: "bind an ephemeral port (TCP)", want: unix.EACCES, run: func(c childConfig) error {
		return bindTCP(unix.IPPROTO_TCP, 0)
	}},
	{name: "connect over TCP", want: unix.EACCES, run: func(c childConfig) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrInet4{Port: c.ConnectPort, Addr: [4]byte{127, 0, 0, 1}})
	}},
	{name: "signal a process of the same uid outside the worker", want: unix.EPERM, run: func(c childConfig) error {
		return unix.Kill(c.Outsider, 0)
	}},
	{name: "use a per-CPU map fd received from the parent", noControl: true, run: func(c childConfig) error {
		// cilium/ebpf reads /sys/devices/system/cpu/possible on the
		// first per-CPU map it opens: Worker must have read it already.
		fd, err := unix.FcntlInt(uintptr(c.MapFD), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		m, err := ebpf.NewMapFromFD(fd)
		if err != nil {
			return err
		}
		defer m.Close()
		var per []uint64
		return m.Lookup(uint32(0), &per)
	}},
	{name: "bind another port with Multipath TCP", informational: true, underSeccomp: unix.EPROTONOSUPPORT, run: func(c childConfig) error {
		return bindTCP(unix.IPPROTO_MPTCP, c.OtherPort)
	}},
}

func TestWorkerConfinesEveryThread(t *testing.T) {
	testConfinedChild(t, false)
}

// TestWorkerUnderTheWorkerSeccompFilter runs the checks with the worker's
// seccomp allowlist installed after Worker, as the worker installs it: the
// two together, and Multipath TCP refused.
func TestWorkerUnderTheWorkerSeccompFilter(t *testing.T) {
	testConfinedChild(t, true)
}

func requireLandlock(t *testing.T) int {
	t.Helper()
	abi, err := ll.LandlockGetABIVersion()
	if err != nil || abi < 6 {
		testenv.Unavailable(t, fmt.Sprintf("needs Landlock ABI 6 or newer for every check (kernel ABI %d, %v)", abi, err))
	}
	return abi
}

// worldDir is a temporary directory every user may traverse.
func worldDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ownedDir is a directory of the child's uid, mode 0750.
func ownedDir(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, childUID, childUID); err != nil {
		t.Fatal(err)
	}
	return dir
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// childBinary copies this test binary where the child's uid can run it.
func childBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(worldDir(t, 0o755), "confine.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func testConfinedChild(t *testing.T, withSeccomp bool) {
	testenv.RequireRoot(t)
	requireLandlock(t)

	base := worldDir(t, 0o755)
	// The policy directory and the outside directory are writable by
	// anyone, and the secret readable by anyone: only Landlock stands
	// in the way.
	polDir := filepath.Join(base, "policies")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{polDir, outside, filepath.Join(base, "secret")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{polDir, outside} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	policyFile := filepath.Join(polDir, "cde.yaml")
	secret := filepath.Join(base, "secret", "shadow")
	for f, body := range map[string]string{policyFile: "v1\n", secret: "secret\n"} {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	outsider := exec.Command("sleep", "300")
	outsider.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: childUID, Gid: childUID, Groups: []uint32{}}}
	if err := outsider.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { outsider.Process.Kill(); outsider.Wait() })

	cfg := childConfig{
		Paths: Paths{
			Policies:    []string{polDir},
			AuditDir:    ownedDir(t, base, "audit"),
			StateDir:    ownedDir(t, base, "state"),
			MetricsAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		},
		Seccomp:     withSeccomp,
		PolicyFile:  policyFile,
		Outside:     outside,
		Secret:      secret,
		OtherPort:   freePort(t),
		ConnectPort: ln.Addr().(*net.TCPAddr).Port,
		Outsider:    outsider.Process.Pid,
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	// A descriptor of its own: an os.File closes its fd when collected.
	dup, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	mapFile := os.NewFile(uintptr(dup), "per-cpu map")
	t.Cleanup(func() { mapFile.Close() })
	cfg.MapFD = 3 // the first of ExtraFiles
	env, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(childBinary(t), "-test.run=^TestConfinedChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+string(env))
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{mapFile}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: childUID, Gid: childUID, Groups: []uint32{}}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var results []result
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch {
		case strings.HasPrefix(line, "RESULT "):
			var r result
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &r); err != nil {
				t.Fatalf("child printed %q: %v", line, err)
			}
			results = append(results, r)
		case line == "RENAME":
			// Replace the policy file the way an editor does; the child
			// must read the new one through its directory grant.
			tmp := policyFile + ".tmp"
			if err := os.WriteFile(tmp, []byte("v2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, policyFile); err != nil {
				t.Fatal(err)
			}
			io.WriteString(stdin, "go\n")
		}
	}
	err = cmd.Wait()
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestConfinedChild") {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), stderr.String())
	}

	judge(t, results, withSeccomp)

	r, err := ReadReport(cfg.Paths.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != cmd.Process.Pid || r.UID != childUID || !r.Filesystem || !r.Network || !r.Scoped || r.ABI < 6 {
		t.Errorf("report %+v does not describe the child %d, uid %d, fully confined", r, cmd.Process.Pid, childUID)
	}
	if !slices.ContainsFunc(r.BindTCP, func(p Port) bool { return p.Port == uint16(metricsPortOf(cfg)) }) || len(r.ConnectTCP) != 0 {
		t.Errorf("report binds %v, connects %v; want the metrics port and no connect", r.BindTCP, r.ConnectTCP)
	}
}

func judge(t *testing.T, results []result, withSeccomp bool) {
	t.Helper()
	got := map[string][]result{}
	for _, r := range results {
		got[r.Check] = append(got[r.Check], r)
	}
	for _, c := range checks {
		if withSeccomp && c.killedBySeccomp {
			continue
		}
		want, informational := c.want, c.informational
		if withSeccomp && c.underSeccomp != 0 {
			want, informational = c.underSeccomp, false
		}
		rs := got[c.name]
		var before, after int
		threads := map[int]bool{}
		for _, r := range rs {
			switch r.Phase {
			case "before":
				before++
				if r.Err != "" && !c.informational {
					t.Errorf("%s, before Worker: %s; the check cannot show Landlock's effect", c.name, r.Err)
				}
			case "after":
				after++
				threads[r.Thread] = true
				switch {
				case informational:
					if r.Thread == 0 {
						t.Logf("%s, after Worker: err=%q (Landlock ABI 7 does not restrict it; the seccomp filter must refuse IPPROTO_MPTCP)", c.name, r.Err)
					}
				case want == 0 && r.Err != "":
					t.Errorf("%s, after Worker, thread %d: %s; want success", c.name, r.Thread, r.Err)
				case want != 0 && syscall.Errno(r.Errno) != want:
					t.Errorf("%s, after Worker, thread %d: err=%q; want %v", c.name, r.Thread, r.Err, want)
				}
			}
		}
		wantBefore := 1
		if c.noControl {
			wantBefore = 0
		}
		if before != wantBefore || len(threads) != childThreads {
			t.Errorf("%s: %d results before Worker and %d threads after; want %d and %d",
				c.name, before, len(threads), wantBefore, childThreads)
		}
	}
	var renamed bool
	for _, r := range got["read a policy file replaced by rename"] {
		renamed = true
		if r.Err != "" {
			t.Errorf("read a policy file replaced by rename: %s", r.Err)
		}
	}
	if !renamed {
		t.Error("the child did not read the renamed policy file")
	}
}

// TestMain leaves TestConfinedChild out of every run but the child's own,
// so that it neither runs in the parent nor shows up as a skip.
func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(childEnv) == "" {
		skip := "^TestConfinedChild$"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		flag.Set("test.skip", skip)
	}
	os.Exit(m.Run())
}

// TestConfinedChild is the child's side, run by TestWorkerConfinesEveryThread
// with childEnv set.
func TestConfinedChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Fatal("runs only as the child of TestWorkerConfinesEveryThread, with " + childEnv + " set")
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != childUID {
		t.Fatalf("child runs as uid %d, want %d", os.Getuid(), childUID)
	}
	// The worker has NoNewPrivs from the loader.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	report := func(name, phase string, thread int, err error) {
		r := result{Check: name, Phase: phase, Thread: thread}
		if err != nil {
			r.Err = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				r.Errno = int(errno)
			}
		}
		b, _ := json.Marshal(r)
		fmt.Printf("RESULT %s\n", b)
	}

	// Threads that exist before Worker, each locked to its goroutine, so
	// that every check runs on each of them.
	type job struct {
		run  func() error
		done chan error
	}
	jobs := make([]chan job, childThreads)
	tids := make(chan int, childThreads)
	for i := range jobs {
		jobs[i] = make(chan job)
		go func(jc chan job) {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			for j := range jc {
				j.done <- j.run()
			}
		}(jobs[i])
	}
	seen := map[int]bool{}
	for range childThreads {
		seen[<-tids] = true
	}
	if len(seen) != childThreads {
		t.Fatalf("%d distinct threads, want %d", len(seen), childThreads)
	}

	for _, c := range checks {
		if cfg.Seccomp && c.killedBySeccomp || c.noControl {
			continue
		}
		report(c.name, "before", 0, c.run(cfg))
	}
	r, err := Worker(cfg.Paths)
	if err != nil {
		t.Fatal(err)
	}
	confined.Store(true)
	if err := WriteReport(cfg.Paths.StateDir, r); err != nil {
		t.Fatal(err)
	}
	// The worker's order: Landlock, its report, then the seccomp
	// allowlist, which has no landlock_* calls and no rename.
	if cfg.Seccomp {
		policy, err := sandbox.WorkerPolicy(sandbox.ModeAllowlist)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sandbox.Install(policy); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range checks {
		if cfg.Seccomp && c.killedBySeccomp {
			continue
		}
		for i, jc := range jobs {
			j := job{run: func() error { return c.run(cfg) }, done: make(chan error)}
			jc <- j
			report(c.name, "after", i, <-j.done)
		}
	}

	fmt.Println("RENAME")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil || line != "go\n" {
		t.Fatalf("parent answered %q, %v", line, err)
	}
	b, err := os.ReadFile(cfg.PolicyFile)
	if err == nil && string(b) != "v2\n" {
		err = fmt.Errorf("read %q, want the replacement", b)
	}
	report("read a policy file replaced by rename", "after", 0, err)

	// The grants still hold a while later, when the runtime has started
	// and retired threads of its own.
	time.Sleep(100 * time.Millisecond)
	if _, err := os.ReadFile("/proc/self/status"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unique(cfg.Paths.AuditDir, "late"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	// A check replaced the report with a bare one; the parent reads
	// the real one.
	if !cfg.Seccomp {
		if err := WriteReport(cfg.Paths.StateDir, r); err != nil {
			t.Fatal(err)
		}
	}
}
