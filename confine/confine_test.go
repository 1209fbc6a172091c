package confine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mkdirs(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func touch(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(name, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func grantsOf(r Report) map[string]string {
	m := map[string]string{}
	for _, g := range r.Paths {
		m[g.Path] = g.Access
	}
	return m
}

func TestPlanGrantsPolicyDirectoriesNotFiles(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "etc/pol", "etc/globbed/a", "audit", "state", "real", "conf", "data")
	touch(t, filepath.Join(root, "etc/pol/one.yaml"))
	touch(t, filepath.Join(root, "conf/single.yaml"))
	touch(t, filepath.Join(root, "real/target.yaml"))
	if err := os.Symlink(filepath.Join(root, "real/target.yaml"), filepath.Join(root, "conf/linked.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "data"), filepath.Join(root, "dirlink")); err != nil {
		t.Fatal(err)
	}

	p := Paths{
		Policies: []string{
			filepath.Join(root, "etc/pol"),               // a directory: itself
			filepath.Join(root, "conf/single.yaml"),      // a file: its directory
			filepath.Join(root, "conf/linked.yaml"),      // a link: both directories
			filepath.Join(root, "etc/globbed/*/x*.yaml"), // a glob: the part before the wildcard
			filepath.Join(root, "dirlink"),               // a link to a directory
			filepath.Join(root, "gone/missing.yaml"),     // nothing there
		},
		AuditDir:    filepath.Join(root, "audit"),
		StateDir:    filepath.Join(root, "state"),
		MetricsAddr: "127.0.0.1:9720",
	}
	r, err := Plan(p, 7)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		filepath.Join(root, "etc/pol"):       "read",
		filepath.Join(root, "conf"):          "read",
		filepath.Join(root, "real"):          "read",
		filepath.Join(root, "etc/globbed"):   "read",
		filepath.Join(root, "dirlink"):       "read",
		filepath.Join(root, "data"):          "read",
		"/proc/" + strconv.Itoa(os.Getpid()): "read",
		"/proc/stat":                         "read",
		filepath.Join(root, "audit"):         "read-write",
		filepath.Join(root, "state"):         "read-write",
	}
	got := grantsOf(r)
	for path, access := range want {
		if got[path] != access {
			t.Errorf("grant for %s = %q, want %q", path, got[path], access)
		}
	}
	for path := range got {
		if _, ok := want[path]; !ok {
			t.Errorf("unexpected grant for %s", path)
		}
	}
	if !slices.Equal(r.Missing, []string{filepath.Join(root, "gone/missing.yaml")}) {
		t.Errorf("missing = %v", r.Missing)
	}
	for _, g := range r.Paths {
		if slices.Contains(g.Rights, "execute") || slices.Contains(g.Rights, "make_sym") ||
			slices.Contains(g.Rights, "make_fifo") || slices.Contains(g.Rights, "refer") {
			t.Errorf("%s grants %v", g.Path, g.Rights)
		}
		if g.Why == "" {
			t.Errorf("%s has no reason", g.Path)
		}
		if g.Access == "read" && slices.Contains(g.Rights, "write_file") {
			t.Errorf("read grant %s has %v", g.Path, g.Rights)
		}
	}
	if g := r.Paths[slices.IndexFunc(r.Paths, func(g Grant) bool { return g.Path == "/proc/stat" })]; !slices.Equal(g.Rights, []string{"read_file"}) {
		t.Errorf("/proc/stat, a file, gets %v", g.Rights)
	}
	if !slices.Equal(r.BindTCP, []Port{{Port: 9720, Why: "serve metrics on 127.0.0.1:9720"}}) || len(r.ConnectTCP) != 0 {
		t.Errorf("bind %v connect %v", r.BindTCP, r.ConnectTCP)
	}
}

func TestPlanRelativePolicyPathsAreAbsolute(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "pol", "audit", "state")
	t.Chdir(root)
	r, err := Plan(Paths{Policies: []string{"pol", "*.yaml"}, AuditDir: "audit", StateDir: "state", MetricsAddr: ":9720"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	got := grantsOf(r)
	for _, p := range []string{"pol", "audit", "state", ""} {
		if _, ok := got[filepath.Join(root, p)]; !ok {
			t.Errorf("no grant for %s in %v", filepath.Join(root, p), got)
		}
	}
}

func TestPlanRefusesMissingWritableDirectories(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "audit")
	for _, p := range []Paths{
		{AuditDir: filepath.Join(root, "audit"), StateDir: filepath.Join(root, "nope"), MetricsAddr: ":1"},
		{AuditDir: filepath.Join(root, "nope"), StateDir: filepath.Join(root, "audit"), MetricsAddr: ":1"},
		{AuditDir: filepath.Join(root, "audit"), StateDir: "", MetricsAddr: ":1"},
		{AuditDir: filepath.Join(root, "audit"), StateDir: filepath.Join(root, "audit"), MetricsAddr: "no-port"},
		{AuditDir: filepath.Join(root, "audit"), StateDir: filepath.Join(root, "audit"), MetricsAddr: "127.0.0.1:99999"},
	} {
		if _, err := Plan(p, 7); err == nil {
			t.Errorf("Plan(%+v) succeeded", p)
		}
	}
}

func TestMetricsPortAndResolverFiles(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		port     uint16
		resolver bool
	}{
		{"127.0.0.1:9720", 9720, false},
		{"[::1]:9720", 9720, false},
		{"[fe80::1%lo]:9720", 9720, false},
		{":9720", 9720, false},
		{"0.0.0.0:0", 0, false},
		{"localhost:9720", 9720, true},
		{"127.0.0.1:http", 80, true},
	} {
		port, files, err := metricsPort(tc.addr)
		if err != nil {
			t.Errorf("%s: %v", tc.addr, err)
			continue
		}
		if port != tc.port || (len(files) > 0) != tc.resolver {
			t.Errorf("%s: port %d, resolver files %v; want %d, resolver %v", tc.addr, port, files, tc.port, tc.resolver)
		}
	}
}

func TestGlobBase(t *testing.T) {
	for in, want := range map[string]string{
		"/etc/pci-segment/policies/*.yaml": "/etc/pci-segment/policies",
		"/etc/pci/*/p.yaml":                "/etc/pci",
		"/etc/pci/p[12].yaml":              "/etc/pci",
		"/*.yaml":                          "/",
		"*.yaml":                           ".",
		"pol/*.yaml":                       "pol",
	} {
		if got := globBase(in); got != want {
			t.Errorf("globBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReportSaysWhatEachABICovers(t *testing.T) {
	root := t.TempDir()
	mkdirs(t, root, "a", "s")
	p := Paths{AuditDir: filepath.Join(root, "a"), StateDir: filepath.Join(root, "s"), MetricsAddr: "127.0.0.1:9720"}
	for _, tc := range []struct {
		abi              int
		fs, net, scoped  bool
		handled, unnamed string
	}{
		{0, false, false, false, "", "everything"},
		{1, true, false, false, "make_sym", "every network operation"},
		{3, true, false, false, "truncate", "ioctl on device files"},
		{4, true, true, false, "truncate", "signals and abstract UNIX sockets"},
		{6, true, true, true, "ioctl_dev", "Multipath TCP"},
		{7, true, true, true, "ioctl_dev", "Multipath TCP"},
		{11, true, true, true, "ioctl_dev", "Multipath TCP"},
	} {
		r, err := Plan(p, tc.abi)
		if err != nil {
			t.Fatal(err)
		}
		if r.Filesystem != tc.fs || r.Network != tc.net || r.Scoped != tc.scoped || r.Enforced != (tc.fs || tc.net || tc.scoped) {
			t.Errorf("ABI %d: fs %v net %v scoped %v enforced %v", tc.abi, r.Filesystem, r.Network, r.Scoped, r.Enforced)
		}
		if tc.handled != "" && !slices.Contains(r.HandledFS, tc.handled) {
			t.Errorf("ABI %d: handled %v lacks %s", tc.abi, r.HandledFS, tc.handled)
		}
		if slices.Contains(r.HandledFS, "resolve_unix") || slices.Contains(r.HandledNet, "bind_udp") {
			t.Errorf("ABI %d: handles more than the ABI %d ruleset: %v %v", tc.abi, RulesetABI, r.HandledFS, r.HandledNet)
		}
		if !slices.ContainsFunc(r.NotRestricted, func(s string) bool { return strings.Contains(s, tc.unnamed) }) {
			t.Errorf("ABI %d: not restricted %v lacks %q", tc.abi, r.NotRestricted, tc.unnamed)
		}
	}
}

func TestReportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	root := t.TempDir()
	mkdirs(t, root, "a", "s")
	r, err := Plan(Paths{AuditDir: filepath.Join(root, "a"), StateDir: filepath.Join(root, "s"), MetricsAddr: "127.0.0.1:9720"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	r.Time = r.Time.Truncate(time.Microsecond)
	for range 2 { // the second write replaces the first
		if err := WriteReport(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only %s", len(entries), ReportFile)
	}
	back, err := ReadReport(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.PID != r.PID || back.ABI != 7 || !back.Time.Equal(r.Time) || len(back.Paths) != len(r.Paths) ||
		!slices.Equal(back.Paths[0].Rights, r.Paths[0].Rights) || !slices.Equal(back.BindTCP, r.BindTCP) {
		t.Errorf("read back %+v\nwrote %+v", back, r)
	}
}

func TestReadReportRefusesWhatTheWorkerCouldPlant(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadReport(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing report: %v, want fs.ErrNotExist", err)
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(`{"pid": 1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, ReportFile)
	if err := os.Symlink(secret, name); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(dir); err == nil {
		t.Error("followed a symbolic link")
	}
	os.Remove(name)
	if err := unix.Mkfifo(name, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := ReadReport(dir); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read a FIFO")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked on a FIFO")
	}
	os.Remove(name)
	if err := os.WriteFile(name, []byte(`{"pid": 1, "x": "`+strings.Repeat("a", maxReportSize)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(dir); err == nil {
		t.Error("read an oversized report")
	}
	if err := os.WriteFile(name, []byte(`{"abi": 7}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadReport(dir); err == nil {
		t.Error("accepted a report naming no process")
	}
}
