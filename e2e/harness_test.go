package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/testenv"
)

// binary is pci-segment built for these tests, in a directory every user can
// traverse: the worker re-executes it as the service account.
var binary string

// nextLayout is the same program built with another pin layout (v3): what
// an upgrade to a build whose maps changed looks like.
var nextLayout string

func TestMain(m *testing.M) {
	if os.Getenv(unitFilterEnv) != "" {
		os.Exit(execUnderUnitFilter())
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "pci-segment-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binary = filepath.Join(dir, "pci-segment")
		nextLayout = filepath.Join(dir, "pci-segment-next-layout")
		for _, b := range []struct{ out, ldflags string }{
			{binary, ""},
			// The next build: another pin layout, for the upgrade test.
			{nextLayout, "-X github.com/pci-segment/pci-segment/bpf.Layout=v3"},
		} {
			// enforce runs the loader binary beside it: the root half.
			for out, pkg := range map[string]string{b.out: "../cmd/pci-segment", b.out + "-loader": "../cmd/pci-segment-loader"} {
				build := exec.Command("go", "build", "-ldflags", b.ldflags, "-o", out, pkg)
				build.Stdout, build.Stderr = os.Stderr, os.Stderr
				if err := build.Run(); err != nil {
					fmt.Fprintln(os.Stderr, "build", pkg+":", err)
					return 1
				}
			}
		}
	}
	return m.Run()
}

// syncBuffer collects a process's output while it runs.
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

// enforcer is one `pci-segment enforce` in a lab's host namespace, with its
// own pin, audit and state directories, so tests run in parallel and beside
// a real install.
type enforcer struct {
	lab      *lab.Lab
	cmd      *exec.Cmd
	out      *syncBuffer
	exited   chan error
	pinDir   string
	auditDir string
	stateDir string
	keyDir   string
	user     string
}

type enforceOpts struct {
	labels string
	env    []string
	// noAccount runs without creating a service account (env must name one).
	noAccount bool
	// args are further enforce flags.
	args []string
	// pinDir, when set, is the pin directory to use (another enforcer's,
	// to take over from it).
	pinDir string
	// binary, when set, is the pci-segment to run (nextLayout).
	binary string
	// account, when set, is the service account (user and group) to run
	// the worker as: another enforcer's, to take over its state.
	account string
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// policyDir writes documents into a directory the service account can read.
func policyDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := worldDir(t)
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// worldDir is a temporary directory that other users may traverse.
func worldDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// newEnforcer prepares an enforce command for l without starting it.
func newEnforcer(t *testing.T, l *lab.Lab, policies string, o enforceOpts) *enforcer {
	t.Helper()
	e := &enforcer{
		lab:      l,
		out:      &syncBuffer{},
		exited:   make(chan error, 1),
		pinDir:   "/sys/fs/bpf/pci-segment-e2e-" + randomHex(t, 6),
		auditDir: filepath.Join(worldDir(t), "audit"),
		stateDir: filepath.Join(worldDir(t), "state"),
		keyDir:   filepath.Join(worldDir(t), "keys"),
	}
	if o.pinDir != "" {
		e.pinDir = o.pinDir
	}
	env := append(os.Environ(), o.env...)
	if o.account != "" {
		e.user = o.account
		env = append(env, "PCI_SEGMENT_PRIVILEGE_USER="+o.account, "PCI_SEGMENT_PRIVILEGE_GROUP="+o.account)
	} else if !o.noAccount {
		user, group := lab.ServiceAccount(t)
		e.user = user
		env = append(env, "PCI_SEGMENT_PRIVILEGE_USER="+user, "PCI_SEGMENT_PRIVILEGE_GROUP="+group)
	}
	labels := o.labels
	if labels == "" {
		labels = "pci-env=cde,role=web"
	}
	bin := binary
	if o.binary != "" {
		bin = o.binary
	}
	e.cmd = l.Command(l.HostNS, bin, "enforce", "-f", policies,
		"--interface", l.HostIf, "--labels", labels,
		"--pin-dir", e.pinDir, "--audit-dir", e.auditDir, "--state-dir", e.stateDir, "--key-dir", e.keyDir,
		"--metrics-addr", "127.0.0.1:9720")
	e.cmd.Args = append(e.cmd.Args, o.args...)
	e.cmd.Env = env
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	t.Cleanup(func() {
		if e.cmd.Process != nil {
			e.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-e.exited:
			case <-time.After(10 * time.Second):
				e.cmd.Process.Kill()
				<-e.exited
			}
		}
		// Remove whatever the test left: enforcement ends with the test.
		out, err := exec.Command(binary, "detach", "--pin-dir", e.pinDir, "--syslog", "").CombinedOutput()
		if err != nil {
			t.Errorf("cleanup detach: %v\n%s", err, out)
		}
		if _, err := os.Stat(e.pinDir); err == nil {
			t.Errorf("pin directory %s still exists after detach", e.pinDir)
		}
		if t.Failed() {
			t.Logf("enforce output:\n%s", e.out.String())
		}
	})
	return e
}

func (e *enforcer) start(t *testing.T) {
	t.Helper()
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.exited <- e.cmd.Wait() }()
}

// startEnforcing starts enforce and waits until it reports enforcing.
func startEnforcing(t *testing.T, l *lab.Lab, policies string, o enforceOpts) *enforcer {
	t.Helper()
	e := newEnforcer(t, l, policies, o)
	e.start(t)
	e.waitEnforcing(t)
	return e
}

// waitEnforcing waits until enforce reports enforcing.
func (e *enforcer) waitEnforcing(t *testing.T) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(e.out.String(), "enforcing:") {
		select {
		case err := <-e.exited:
			e.exited <- err
			t.Fatalf("enforce exited before enforcing (%v):\n%s", err, e.out.String())
		case <-deadline:
			t.Fatalf("enforce did not report enforcing within 30s:\n%s", e.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// wait waits for enforce to exit by itself.
func (e *enforcer) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.exited:
		e.cmd.Process = nil
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("enforce did not exit:\n%s", e.out.String())
		return nil
	}
}

// pids returns the pids of processes named pci-segment that belong to this
// enforcer: the loader and its child.
func (e *enforcer) pids(t *testing.T) (loader, worker int) {
	t.Helper()
	loader = e.cmd.Process.Pid
	// The worker is the child of one of the loader's threads.
	var b []byte
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", loader))
	for _, task := range tasks {
		c, _ := os.ReadFile(task)
		b = append(b, ' ')
		b = append(b, c...)
	}
	for _, f := range strings.Fields(string(b)) {
		var pid int
		fmt.Sscan(f, &pid)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "pci-segment" {
			return loader, pid
		}
	}
	t.Fatalf("no worker child of loader %d", loader)
	return 0, 0
}

// auditRecords returns the audit log's lines.
func (e *enforcer) auditLog(t *testing.T) string {
	t.Helper()
	// The worker batches its writes: a record reaches the file within
	// audit.Options.SyncEvery (100ms by default).
	time.Sleep(300 * time.Millisecond)
	b, err := os.ReadFile(filepath.Join(e.auditDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// auditRecord is the part of an audit record the tests read.
type auditRecord struct {
	Type     string         `json:"type"`
	Outcome  string         `json:"outcome"`
	Resource string         `json:"resource"`
	Details  map[string]any `json:"details"`
}

// auditRecords returns the records of type typ, in order.
func (e *enforcer) auditRecords(t *testing.T, typ string) []auditRecord {
	t.Helper()
	var out []auditRecord
	sc := bufio.NewScanner(strings.NewReader(e.auditLog(t)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit record %q: %v", sc.Text(), err)
		}
		if r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

// scrape fetches the worker's metrics from inside the host namespace.
func (e *enforcer) scrape(t *testing.T) string {
	t.Helper()
	body, _ := e.get(t, "/metrics")
	return body
}

// get fetches a path of the worker's HTTP server, from inside the host
// namespace, and returns the body and status code.
func (e *enforcer) get(t *testing.T, path string) (string, int) {
	t.Helper()
	return e.getURL(t, "http://127.0.0.1:9720"+path)
}

// ready waits for /readyz to answer 200: the worker hears what the loader
// attached just after the loader reports enforcing.
func (e *enforcer) ready(t *testing.T) (string, int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, code := e.get(t, "/readyz")
		if code == 200 || time.Now().After(deadline) {
			return body, code
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getURL fetches url from inside the host namespace.
func (e *enforcer) getURL(t *testing.T, url string) (string, int) {
	t.Helper()
	body, code, err := e.tryGet(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body, code
}

// tryGet is getURL that returns the error.
func (e *enforcer) tryGet(url string) (string, int, error) {
	// The connection must be made inside the namespace; the transport
	// dials on its own goroutine, so dial here and hand it the socket.
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = e.lab.Do(e.lab.HostNS, func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	var body string
	code := 0
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err == nil {
		defer resp.Body.Close()
		var b []byte
		b, err = io.ReadAll(resp.Body)
		body, code = string(b), resp.StatusCode
	}
	return body, code, err
}

// metricValue finds one sample's value in a scrape.
func metricValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	s := bufio.NewScanner(strings.NewReader(scrape))
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, series+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(line, series+" "), &v)
			return v
		}
	}
	t.Fatalf("series %s not in scrape:\n%s", series, scrape)
	return 0
}

// tcxPrograms counts the programs attached with tcx to the lab's host
// interface, in each direction.
func tcxPrograms(t *testing.T, l *lab.Lab) (ingress, egress int) {
	t.Helper()
	err := l.Do(l.HostNS, func() error {
		for _, a := range []struct {
			typ ebpf.AttachType
			n   *int
		}{{ebpf.AttachTCXIngress, &ingress}, {ebpf.AttachTCXEgress, &egress}} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: l.HostIfIndex, Attach: a.typ})
			if err != nil {
				return err
			}
			*a.n = len(res.Programs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("query tcx programs: %v", err)
	}
	return ingress, egress
}

// pinsLeft lists what remains in a pin directory.
func pinsLeft(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		left = append(left, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	if binary == "" {
		t.Fatal("pci-segment was not built")
	}
}
