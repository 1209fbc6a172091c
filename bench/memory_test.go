package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
)

// BenchmarkMemory runs the real enforce, loader and worker, in a lab with
// the allowlist at 10,000 and 100,000 prefixes and the default map sizes,
// and reads what each process holds: resident memory once it enforces
// (steady: samples a second apart, after a settling pause) and at its peak
// (VmHWM; the loader's reset once it enforces, loading the programs being
// a one-off, and its start-up peak recorded apart), and the BPF memory of every pinned map (memlock in
// fdinfo). Each size is started starts times.
func BenchmarkMemory(b *testing.B) {
	const (
		starts  = 3
		samples = 5
		settle  = 3 * time.Second
	)
	l := lab.New(b)
	user, group := lab.ServiceAccount(b)
	bin := buildBinary(b)
	var rs []Result
	for _, n := range []int{10_000, 100_000} {
		var loaderRSS, workerRSS, loaderPeak, loaderStart, workerPeak, mapMem []float64
		for range starts {
			e := startEnforce(b, l, bin, user, group, n)
			loaderStart = append(loaderStart, statusMiB(b, e.loader, "VmHWM"))
			// From here on the peak is the running loader's: "5" resets
			// VmHWM to the current RSS (proc(5), clear_refs).
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", e.loader), []byte("5"), 0); err != nil {
				b.Fatal(err)
			}
			time.Sleep(settle)
			for range samples {
				loaderRSS = append(loaderRSS, statusMiB(b, e.loader, "VmRSS"))
				workerRSS = append(workerRSS, statusMiB(b, e.worker, "VmRSS"))
				time.Sleep(time.Second)
			}
			loaderPeak = append(loaderPeak, statusMiB(b, e.loader, "VmHWM"))
			workerPeak = append(workerPeak, statusMiB(b, e.worker, "VmHWM"))
			mapMem = append(mapMem, pinnedMapMiB(b, e.pinDir))
			e.stop(b)
		}
		p := map[string]string{"prefixes": strconv.Itoa(n)}
		how := fmt.Sprintf("pci-segment enforce in a lab, default map sizes, %d starts", starts)
		steady := fmt.Sprintf("%s, %d VmRSS samples 1 s apart from %v after enforcing", how, samples, settle)
		rs = append(rs,
			Result{Suite: SuiteMemory, Name: "worker steady RSS", Params: p, Unit: "MiB", Runs: workerRSS, Method: steady},
			Result{Suite: SuiteMemory, Name: "worker peak RSS", Params: p, Unit: "MiB", Runs: workerPeak, Method: how + ", VmHWM"},
			Result{Suite: SuiteMemory, Name: "loader steady RSS", Params: p, Unit: "MiB", Runs: loaderRSS, Method: steady},
			Result{Suite: SuiteMemory, Name: "loader peak RSS", Params: p, Unit: "MiB", Runs: loaderPeak, Method: how + ", VmHWM reset once it enforces"},
			Result{Suite: SuiteMemory, Name: "loader start-up peak RSS", Params: p, Unit: "MiB", Runs: loaderStart, Method: how + ", VmHWM when it starts enforcing: loading the programs included"},
			Result{Suite: SuiteMemory, Name: "BPF map memory", Params: p, Unit: "MiB", Runs: mapMem, Method: how + ", memlock of every pinned map from fdinfo"},
		)
	}
	Record(b, "memory", rs...)
}

// buildBinary builds pci-segment, and the loader beside it, where the
// service account can run them.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pcs-bench-bin-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "pci-segment")
	for out, pkg := range map[string]string{bin: "../cmd/pci-segment", bin + "-loader": "../cmd/pci-segment-loader"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			tb.Fatalf("build %s: %v\n%s", pkg, err, b)
		}
	}
	return bin
}

type enforceRun struct {
	cmd            *exec.Cmd
	mu             sync.Mutex
	out            *bytes.Buffer
	loader, worker int
	pinDir, bin    string
	done           chan error
}

// startEnforce starts enforce on the lab's host interface with the
// allowlist of n prefixes, and waits until it enforces.
func startEnforce(tb testing.TB, l *lab.Lab, bin, user, group string, n int) *enforceRun {
	tb.Helper()
	dir, err := os.MkdirTemp("", "pcs-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	pols := filepath.Join(dir, "policies")
	os.Mkdir(pols, 0o755)
	if err := os.WriteFile(filepath.Join(pols, "bench.yaml"), Allowlist(n, false, l.Net4), 0o644); err != nil {
		tb.Fatal(err)
	}
	e := &enforceRun{out: &bytes.Buffer{}, bin: bin, done: make(chan error, 1),
		pinDir: fmt.Sprintf("/sys/fs/bpf/pci-segment-bench-%d", os.Getpid())}
	e.cmd = l.Command(l.HostNS, bin, "enforce", "-f", pols, "--interface", l.HostIf, "--labels", "role=bench",
		"--pin-dir", e.pinDir, "--audit-dir", filepath.Join(dir, "audit"), "--state-dir", filepath.Join(dir, "state"),
		"--metrics-addr", "127.0.0.1:0")
	e.cmd.Env = append(os.Environ(), "PCI_SEGMENT_PRIVILEGE_USER="+user, "PCI_SEGMENT_PRIVILEGE_GROUP="+group)
	pr, pw, _ := os.Pipe()
	e.cmd.Stdout, e.cmd.Stderr = pw, pw
	if err := e.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	pw.Close()
	enforcing := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			e.mu.Lock()
			e.out.WriteString(sc.Text() + "\n")
			e.mu.Unlock()
			if strings.Contains(sc.Text(), "enforcing:") {
				once.Do(func() { close(enforcing) })
			}
		}
	}()
	go func() { e.done <- e.cmd.Wait() }()
	tb.Cleanup(func() { e.stop(tb) })
	select {
	case <-enforcing:
	case err := <-e.done:
		tb.Fatalf("enforce exited before enforcing: %v\n%s", err, e.output())
	case <-time.After(2 * time.Minute):
		tb.Fatalf("enforce did not enforce within 2 minutes:\n%s", e.output())
	}
	e.loader = e.cmd.Process.Pid
	if e.worker = workerOf(e.loader); e.worker == 0 {
		tb.Fatalf("no worker child of loader %d", e.loader)
	}
	return e
}

func (e *enforceRun) output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.out.String()
}

// stop ends enforce and removes what it pinned.
func (e *enforceRun) stop(tb testing.TB) {
	if e.cmd.ProcessState == nil && e.cmd.Process != nil {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-e.done
		}
	}
	if out, err := exec.Command(e.bin, "detach", "--pin-dir", e.pinDir).CombinedOutput(); err != nil {
		tb.Errorf("detach %s: %v\n%s", e.pinDir, err, out)
	}
}

// workerOf is the loader's child named pci-segment.
func workerOf(loader int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", loader))
	for _, task := range tasks {
		c, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(c)) {
			pid, _ := strconv.Atoi(f)
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "pci-segment" {
				return pid
			}
		}
	}
	return 0
}

// statusMiB reads a kB field of /proc/PID/status in MiB.
func statusMiB(tb testing.TB, pid int, field string) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				tb.Fatalf("%s of %d: %q", field, pid, line)
			}
			return kb / 1024
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// pinnedMapMiB sums the kernel's memlock accounting of every map pinned
// under pinDir's layout directory.
func pinnedMapMiB(tb testing.TB, pinDir string) float64 {
	tb.Helper()
	dir := filepath.Join(pinDir, bpf.Layout)
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	maps := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
		m.Close()
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				total += n
				maps++
			}
		}
	}
	if maps == 0 {
		tb.Fatalf("no pinned map under %s", dir)
	}
	return total / (1 << 20)
}
