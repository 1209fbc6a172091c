package privilege

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseStatusFixtures(t *testing.T) {
	for _, tc := range []struct {
		file string
		want ThreadState
	}{
		{
			// cat /proc/self/status as root on the development host.
			file: "status-root.txt",
			want: ThreadState{
				TID: 6131, TGID: 6131, Name: "cat",
				Groups: []uint32{},
				CapPrm: 0x000001fffeffffff, CapEff: 0x000001fffeffffff, CapBnd: 0x000001fffeffffff,
				SeccompFilters: 0,
			},
		},
		{
			// A non-leader thread of a process confined like the worker:
			// setpriv --reuid=998 --regid=998 --groups=998,4 --inh-caps=-all
			// --bounding-set=-all --no-new-privs, then the worker seccomp filter.
			file: "status-worker-thread.txt",
			want: ThreadState{
				TID: 15170, TGID: 15169, Name: "gen",
				UID:        IDs{998, 998, 998, 998},
				GID:        IDs{998, 998, 998, 998},
				Groups:     []uint32{4, 998},
				NoNewPrivs: true, Seccomp: SeccompFilter, SeccompFilters: 1,
			},
		},
	} {
		got, err := ParseStatus(tc.file, []byte(readFixture(t, tc.file)))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.file, got, tc.want)
		}
	}
}

// edit returns the worker fixture with the line starting with prefix
// replaced by repl ("" deletes it), and the 1-based number of that line.
func edit(t *testing.T, prefix, repl string) (string, int) {
	t.Helper()
	lines := strings.SplitAfter(readFixture(t, "status-worker-thread.txt"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = repl
			return strings.Join(lines, ""), i + 1
		}
	}
	t.Fatalf("fixture has no line starting with %q", prefix)
	return "", 0
}

func TestParseStatusRejectsMalformedFields(t *testing.T) {
	for _, tc := range []struct {
		prefix, repl, field string
	}{
		{"Uid:", "Uid:\t998\t998\t998\n", "Uid"},
		{"Uid:", "Uid:\t998\t998\t998\t998\t998\n", "Uid"},
		{"Gid:", "Gid:\t998\tx\t998\t998\n", "Gid"},
		{"Gid:", "Gid:\t998\t998\t998\t4294967296\n", "Gid"},
		{"Groups:", "Groups:\t4 998\n", "Groups"},
		{"Groups:", "Groups:\t4  998 \n", "Groups"},
		{"Groups:", "Groups:\t-4 \n", "Groups"},
		{"CapEff:", "CapEff:\t000000000000000\n", "CapEff"},
		{"CapEff:", "CapEff:\t000000000000000g\n", "CapEff"},
		{"CapBnd:", "CapBnd:\t+000000000000001\n", "CapBnd"},
		{"CapAmb:", "CapAmb: 0000000000000000\n", "CapAmb"},
		{"NoNewPrivs:", "NoNewPrivs:\t2\n", "NoNewPrivs"},
		{"Seccomp:", "Seccomp:\t3\n", "Seccomp"},
		{"Seccomp:", "Seccomp:\t\n", "Seccomp"},
		{"Seccomp_filters:", "Seccomp_filters:\t-1\n", "Seccomp_filters"},
		{"Pid:", "Pid:\t0\n", "Pid"},
		{"Tgid:", "Tgid:\tabc\n", "Tgid"},
		{"Umask:", "CapPrm:\t0000000000000000\n", "CapPrm"}, // repeated
		{"Umask:", "Umask 0022\n", ""},                      // no colon
		{"Umask:", "\n", ""},                                // empty line
		{"Umask:", ":\t0022\n", ""},                         // no key
	} {
		text, line := edit(t, tc.prefix, tc.repl)
		if tc.prefix == "Umask:" && tc.field == "CapPrm" {
			line = 1 + strings.Count(text[:strings.Index(text, "CapPrm:\t0000000000000000\nCapEff")], "\n")
		}
		_, err := ParseStatus("/proc/1/task/2/status", []byte(text))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: err = %v, want a *ParseError", tc.repl, err)
			continue
		}
		if pe.Line != line || pe.Field != tc.field || pe.File != "/proc/1/task/2/status" {
			t.Errorf("%q: error at %s:%d field %q, want line %d field %q", tc.repl, pe.File, pe.Line, pe.Field, line, tc.field)
		}
		if prefix := fmt.Sprintf("/proc/1/task/2/status:%d: ", line); !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%q: message %q does not start with %q", tc.repl, err, prefix)
		}
	}
}

func TestParseStatusRequiresEveryUsedField(t *testing.T) {
	for _, key := range requiredFields {
		text, _ := edit(t, key+":", "")
		_, err := ParseStatus("status", []byte(text))
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Field != key || pe.Line != 0 {
			t.Errorf("without %s: err = %v, want a missing-field error", key, err)
		}
	}
}

func TestParseStatusRejectsTruncatedFile(t *testing.T) {
	text := readFixture(t, "status-worker-thread.txt")
	if _, err := ParseStatus("status", []byte(strings.TrimSuffix(text, "\n"))); err == nil {
		t.Fatal("accepted a file without its final newline")
	}
	if _, err := ParseStatus("status", nil); err == nil {
		t.Fatal("accepted an empty file")
	}
}

func TestParseStatusAcceptsOlderAndNewerKernels(t *testing.T) {
	// Before 5.9 there is no Seccomp_filters line.
	text, _ := edit(t, "Seccomp_filters:", "")
	st, err := ParseStatus("status", []byte(text))
	if err != nil || st.SeccompFilters != -1 {
		t.Fatalf("without Seccomp_filters: %+v, %v; want SeccompFilters -1", st, err)
	}
	// A field added by a later kernel is ignored.
	text, _ = edit(t, "Umask:", "Umask:\t0022\nFutureField:\t1 2 3\n")
	if _, err := ParseStatus("status", []byte(text)); err != nil {
		t.Fatalf("with an unknown field: %v", err)
	}
}

func writeTask(t *testing.T, root string, pid, tid int, status string) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid), "task", fmt.Sprint(tid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if status == "" {
		return // a thread that exited between ReadDir and open
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
}

func statusFor(t *testing.T, pid, tid int) string {
	text := readFixture(t, "status-worker-thread.txt")
	text = strings.Replace(text, "Tgid:\t15169\n", fmt.Sprintf("Tgid:\t%d\n", pid), 1)
	return strings.Replace(text, "Pid:\t15170\n", fmt.Sprintf("Pid:\t%d\n", tid), 1)
}

func withProcRoot(t *testing.T) string {
	root := t.TempDir()
	old := procRoot
	procRoot = root
	t.Cleanup(func() { procRoot = old })
	return root
}

func TestReadThreadsOnAFakeProc(t *testing.T) {
	t.Run("sorted, exited thread left out", func(t *testing.T) {
		root := withProcRoot(t)
		writeTask(t, root, 100, 120, statusFor(t, 100, 120))
		writeTask(t, root, 100, 100, statusFor(t, 100, 100))
		writeTask(t, root, 100, 110, "")
		threads, err := ReadThreads(100)
		if err != nil {
			t.Fatal(err)
		}
		var tids []int
		for _, th := range threads {
			tids = append(tids, th.TID)
		}
		if !slices.Equal(tids, []int{100, 120}) {
			t.Fatalf("threads %v, want [100 120]", tids)
		}
	})
	for name, setup := range map[string]func(t *testing.T, root string){
		"status of another thread": func(t *testing.T, root string) {
			writeTask(t, root, 100, 100, statusFor(t, 100, 101))
		},
		"status of another process": func(t *testing.T, root string) {
			writeTask(t, root, 100, 100, statusFor(t, 200, 100))
		},
		"unexpected entry": func(t *testing.T, root string) {
			writeTask(t, root, 100, 100, statusFor(t, 100, 100))
			os.Mkdir(filepath.Join(root, "100", "task", "x"), 0o755)
		},
		"malformed status": func(t *testing.T, root string) {
			writeTask(t, root, 100, 100, "Name:\tx\n")
		},
		"every thread gone": func(t *testing.T, root string) {
			writeTask(t, root, 100, 100, "")
		},
	} {
		t.Run(name, func(t *testing.T) {
			root := withProcRoot(t)
			setup(t, root)
			if threads, err := ReadThreads(100); err == nil {
				t.Fatalf("ReadThreads = %+v, want an error", threads)
			}
		})
	}
	t.Run("process gone", func(t *testing.T) {
		withProcRoot(t)
		if _, err := ReadThreads(100); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
		if _, err := ReadProcess(100); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want fs.ErrNotExist", err)
		}
	})
}

func TestReadProcessSelf(t *testing.T) {
	pid := os.Getpid()
	p, err := ReadProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.TGID != pid || p.TID != pid {
		t.Fatalf("leader is thread %d of %d, want %d of %d", p.TID, p.TGID, pid, pid)
	}
	if p.UID.Real != uint32(os.Getuid()) || p.UID.Effective != uint32(os.Geteuid()) || p.GID.Real != uint32(os.Getgid()) {
		t.Fatalf("ids %+v %+v do not match getuid/getgid", p.UID, p.GID)
	}
	if !slices.ContainsFunc(p.Threads, func(th ThreadState) bool { return th.TID == pid }) {
		t.Fatalf("threads %+v lack the leader", p.Threads)
	}
	if err := p.Uniform(); err != nil {
		t.Fatal(err)
	}
	caps, err := CurrentCaps()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Effective != p.CapEff || caps.Permitted != p.CapPrm || caps.Inheritable != p.CapInh ||
		caps.Bounding != p.CapBnd || caps.Ambient != p.CapAmb {
		t.Fatalf("capget/prctl say %+v, status says eff %x prm %x inh %x bnd %x amb %x",
			caps, p.CapEff, p.CapPrm, p.CapInh, p.CapBnd, p.CapAmb)
	}
}

func TestUniformNamesTheThreadThatDiffers(t *testing.T) {
	leader := ThreadState{TID: 10, TGID: 10, Groups: []uint32{}, CapEff: CapMask(CapBPF)}
	for name, change := range map[string]func(*ThreadState){
		"CapEff":     func(s *ThreadState) { s.CapEff |= CapMask(CapSysAdmin) },
		"uid":        func(s *ThreadState) { s.UID.Saved = 1 },
		"groups":     func(s *ThreadState) { s.Groups = []uint32{4} },
		"NoNewPrivs": func(s *ThreadState) { s.NoNewPrivs = true },
		"seccomp":    func(s *ThreadState) { s.Seccomp = SeccompFilter },
	} {
		other := leader
		other.TID = 11
		change(&other)
		p := Process{ThreadState: leader, Threads: []ThreadState{leader, other}}
		err := p.Uniform()
		if err == nil || !strings.Contains(err.Error(), "thread 11 ") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s differs: Uniform() = %v", name, err)
		}
	}
	if err := (Process{ThreadState: leader, Threads: []ThreadState{leader}}).Uniform(); err != nil {
		t.Fatal(err)
	}
}

func TestHoldsLessOnlyWhenNothingIsGained(t *testing.T) {
	leader := ThreadState{TID: 10, TGID: 10, Groups: []uint32{}, NoNewPrivs: true, Seccomp: SeccompFilter, SeccompFilters: 1,
		CapEff: CapMask(CapBPF, CapKill), CapPrm: CapMask(CapBPF, CapKill), CapBnd: CapMask(CapBPF, CapKill)}
	for name, tc := range map[string]struct {
		change func(*ThreadState)
		less   bool
	}{
		"bounding set emptied": {func(s *ThreadState) { s.CapBnd = 0 }, true},
		"one capability fewer": {func(s *ThreadState) { s.CapEff = CapMask(CapBPF) }, true},
		"one more filter":      {func(s *ThreadState) { s.SeccompFilters = 2 }, true},
		"a capability more":    {func(s *ThreadState) { s.CapBnd |= CapMask(CapSysAdmin) }, false},
		"one traded for other": {func(s *ThreadState) { s.CapEff = CapMask(CapBPF, CapChown) }, false},
		"ambient gained":       {func(s *ThreadState) { s.CapAmb = CapMask(CapBPF) }, false},
		"NoNewPrivs off":       {func(s *ThreadState) { s.NoNewPrivs = false }, false},
		"seccomp off":          {func(s *ThreadState) { s.Seccomp, s.SeccompFilters = SeccompDisabled, 0 }, false},
		"another uid":          {func(s *ThreadState) { s.UID.Effective = 1 }, false},
		"another group":        {func(s *ThreadState) { s.Groups = []uint32{4} }, false},
	} {
		other := leader
		other.TID = 11
		tc.change(&other)
		if got := HoldsLess(leader, other); got != tc.less {
			t.Errorf("%s: HoldsLess = %v, want %v", name, got, tc.less)
		}
		if Diff(leader, other) == "" {
			t.Errorf("%s: Diff finds no difference", name)
		}
	}
}

// formatStatus renders the fields ParseStatus uses, in the kernel's format.
func formatStatus(st ThreadState) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Name:\t%s\nTgid:\t%d\nPid:\t%d\n", st.Name, st.TGID, st.TID)
	fmt.Fprintf(&b, "Uid:\t%d\t%d\t%d\t%d\n", st.UID.Real, st.UID.Effective, st.UID.Saved, st.UID.FS)
	fmt.Fprintf(&b, "Gid:\t%d\t%d\t%d\t%d\n", st.GID.Real, st.GID.Effective, st.GID.Saved, st.GID.FS)
	b.WriteString("Groups:\t")
	for _, g := range st.Groups {
		fmt.Fprintf(&b, "%d ", g)
	}
	if len(st.Groups) == 0 {
		b.WriteString(" ")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "CapInh:\t%016x\nCapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t%016x\n",
		st.CapInh, st.CapPrm, st.CapEff, st.CapBnd, st.CapAmb)
	nnp := 0
	if st.NoNewPrivs {
		nnp = 1
	}
	fmt.Fprintf(&b, "NoNewPrivs:\t%d\nSeccomp:\t%d\n", nnp, st.Seccomp)
	if st.SeccompFilters >= 0 {
		fmt.Fprintf(&b, "Seccomp_filters:\t%d\n", st.SeccompFilters)
	}
	return b.String()
}

func TestFormatStatusRoundTripsFixtures(t *testing.T) {
	for _, f := range []string{"status-root.txt", "status-worker-thread.txt"} {
		st, err := ParseStatus(f, []byte(readFixture(t, f)))
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseStatus("formatted", []byte(formatStatus(st)))
		if err != nil || !reflect.DeepEqual(st, again) {
			t.Fatalf("%s: round trip gave %+v, %v; want %+v", f, again, err, st)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, name := range []string{"status-root.txt", "status-worker-thread.txt"} {
		f.Add([]byte(readFixture(f, name)))
	}
	f.Add([]byte("Name:\tx\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatus("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		// Whatever it accepts must describe a real thread state: reparsing
		// the kernel rendering of it gives the same state.
		if strings.ContainsAny(st.Name, "\n") {
			t.Fatalf("name %q spans lines", st.Name)
		}
		again, err := ParseStatus("formatted", []byte(formatStatus(st)))
		if err != nil || !reflect.DeepEqual(st, again) {
			t.Fatalf("round trip gave %+v, %v; want %+v", again, err, st)
		}
	})
}

func TestWithNewThreadsSeesThemAll(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := WithNewThreads(100)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Threads) < 100 {
		t.Fatalf("%d threads, want at least 100", len(p.Threads))
	}
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines still run, %d before", runtime.NumGoroutine(), before)
		}
	}
}
