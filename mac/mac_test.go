package mac

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/apparmor"
	"github.com/pci-segment/pci-segment/selinux"
	"github.com/pci-segment/pci-segment/testenv"
)

var envNames = []string{"PCI_SEGMENT_SELINUX_PROFILE", "PCI_SEGMENT_APPARMOR_PROFILE",
	"PCI_SEGMENT_WORKER_SELINUX_PROFILE", "PCI_SEGMENT_WORKER_APPARMOR_PROFILE", SkipEnv}

func setEnv(t *testing.T, env map[string]string) {
	for _, k := range envNames {
		t.Setenv(k, env[k])
	}
}

func TestExpectationsFromTheEnvironment(t *testing.T) {
	for _, c := range []struct {
		name           string
		env            map[string]string
		loader, worker Expect
	}{
		{name: "nothing named", loader: Expect{Process: "loader"}, worker: Expect{Process: "worker"}},
		{name: "the loader's named: the worker's default",
			env:    map[string]string{"PCI_SEGMENT_SELINUX_PROFILE": "pci_segment_t", "PCI_SEGMENT_APPARMOR_PROFILE": "pci-segment"},
			loader: Expect{"loader", "pci_segment_t", "pci-segment"}, worker: Expect{"worker", WorkerDomain, WorkerProfile}},
		{name: "the worker's named",
			env:    map[string]string{"PCI_SEGMENT_SELINUX_PROFILE": "pci_segment_t", "PCI_SEGMENT_WORKER_SELINUX_PROFILE": "my_worker_t", "PCI_SEGMENT_WORKER_APPARMOR_PROFILE": "mine//w"},
			loader: Expect{"loader", "pci_segment_t", ""}, worker: Expect{"worker", "my_worker_t", "mine//w"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			setEnv(t, c.env)
			if got := Loader(); got != c.loader {
				t.Errorf("Loader() = %+v, want %+v", got, c.loader)
			}
			if got := Worker(); got != c.worker {
				t.Errorf("Worker() = %+v, want %+v", got, c.worker)
			}
		})
	}
}

type source struct {
	enabled bool
	mode    int
	current string
}

func (s source) Enabled() bool            { return s.enabled }
func (s source) Mode() int                { return s.mode }
func (s source) Current() (string, error) { return s.current, nil }

func label(s string, err error) func() (string, error) {
	return func() (string, error) { return s, err }
}

func TestCheck(t *testing.T) {
	enforcing := source{true, 1, "system_u:system_r:pci_segment_worker_t:s0"}
	both := Expect{"worker", WorkerDomain, WorkerProfile}
	for _, c := range []struct {
		name   string
		skip   string
		e      Expect
		k      Kernel
		err    string // "" passes
		warns  int
		checks int
	}{
		{name: "nothing expected", e: Expect{Process: "worker"}, k: Kernel{SELinux: source{}, AppArmor: label("", errors.New("unread"))}},
		{name: "both enforcing", e: both, k: Kernel{enforcing, label("pci-segment//worker (enforce)\n", nil)}, checks: 2},
		{name: "permissive and complain warn", e: both,
			k: Kernel{source{true, 0, enforcing.current}, label("pci-segment//worker (complain)", nil)}, checks: 2, warns: 2},
		{name: "the loader's domain in the worker", e: both,
			k: Kernel{source{true, 1, "system_u:system_r:pci_segment_t:s0"}, label("", nil)}, err: "worker: not confined as expected: running in pci_segment_t"},
		{name: "apparmor unconfined", e: both, k: Kernel{enforcing, label("unconfined", nil)}, err: "running unconfined"},
		{name: "skipped", skip: "1", e: both, k: Kernel{source{}, label("unconfined", nil)}},
		{name: "a malformed skip", skip: "off", e: both, k: Kernel{enforcing, label("", nil)}, err: SkipEnv},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(SkipEnv, c.skip)
			r, err := Check(c.e, c.k)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Warnings) != c.warns || len(r.Verified) != c.checks || r.Skipped != (c.skip == "1") {
				t.Errorf("result %+v, want %d warnings, %d checks", r, c.warns, c.checks)
			}
		})
	}
}

// On this host's real kernel: a module that is not active is an error
// pointing to the guide, never a pass.
func TestCheckOnTheRunningKernel(t *testing.T) {
	t.Setenv(SkipEnv, "")
	_, err := Check(Expect{Process: "loader", SELinux: "pci_segment_t"}, Running)
	if (selinux.Kernel{}).Enabled() {
		t.Logf("SELinux is active here: %v", err)
	} else if err == nil || !strings.Contains(err.Error(), "SELinux not active") || !strings.Contains(err.Error(), selinux.Guide) {
		t.Errorf("no SELinux in the kernel: %v, want \"SELinux not active\" and the guide", err)
	}
	_, err = Check(Expect{Process: "loader", AppArmor: "pci-segment"}, Running)
	if _, rerr := apparmor.Current(); rerr == nil {
		t.Logf("AppArmor is active here: %v", err)
	} else if err == nil || !strings.Contains(err.Error(), "AppArmor not active") || !strings.Contains(err.Error(), apparmor.Guide) {
		t.Errorf("no AppArmor in the kernel: %v, want \"AppArmor not active\" and the guide", err)
	}
}

// A host whose /etc/selinux/config says enforcing, but whose kernel has no
// selinuxfs: the configuration is not the kernel's state. Run in a mount
// namespace of its own, with a config file bound over the host's.
func TestConfigSayingEnforcingIsNotSELinux(t *testing.T) {
	if os.Getenv("PCI_SEGMENT_TEST_MAC_CONFIG") == "1" {
		b, _ := os.ReadFile("/etc/selinux/config")
		if !strings.Contains(string(b), "SELINUX=enforcing") {
			t.Fatalf("the bound config says %q", b)
		}
		_, err := Check(Expect{Process: "loader", SELinux: "pci_segment_t"}, Running)
		if err == nil || !strings.Contains(err.Error(), "SELinux not active") {
			t.Fatalf("config enforcing, no selinuxfs: %v, want \"SELinux not active\"", err)
		}
		return
	}
	testenv.RequireRoot(t)
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		t.Skip("this kernel has selinuxfs: the case is a host without it")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		testenv.Unavailable(t, "unshare (util-linux) not installed")
	}
	conf := filepath.Join(t.TempDir(), "config")
	os.WriteFile(conf, []byte("SELINUX=enforcing\nSELINUXTYPE=default\n"), 0o644)
	// The private namespace gets an /etc of its own holding only that
	// config; the host's /etc is untouched.
	script := `mount -t tmpfs none /etc && mkdir /etc/selinux && cp "$2" /etc/selinux/config && exec "$1" -test.run '^TestConfigSayingEnforcingIsNotSELinux$' -test.v`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", os.Args[0], conf)
	cmd.Env = append(os.Environ(), "PCI_SEGMENT_TEST_MAC_CONFIG=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("in a mount namespace with SELINUX=enforcing in /etc/selinux/config: %v\n%s", err, out)
	}
}

func TestWorkerContextKeepsUserRoleAndLevel(t *testing.T) {
	for cur, want := range map[string]string{
		"system_u:system_r:pci_segment_t:s0":               "system_u:system_r:pci_segment_worker_t:s0",
		"system_u:system_r:pci_segment_t:s0-s0:c0.c1023\n": "system_u:system_r:pci_segment_worker_t:s0-s0:c0.c1023",
		"system_u:system_r:pci_segment_t":                  "system_u:system_r:pci_segment_worker_t",
	} {
		if got, err := workerContext(cur, WorkerDomain); err != nil || got != want {
			t.Errorf("workerContext(%q) = %q, %v; want %q", cur, got, err, want)
		}
	}
	if _, err := workerContext("system_u:system_r", WorkerDomain); err == nil {
		t.Error("a two-field context accepted")
	}
}

// With neither module active, asking for the worker's confinement changes
// nothing and fails nothing: the worker's own check reports the absence.
func TestExecWorkerWithoutActiveModules(t *testing.T) {
	if (selinux.Kernel{}).Enabled() {
		t.Skip("SELinux is active here")
	}
	if _, err := apparmor.Current(); err == nil {
		t.Skip("AppArmor is active here")
	}
	t.Setenv(SkipEnv, "")
	if err := ExecWorker(Expect{"worker", WorkerDomain, WorkerProfile}, Running); err != nil {
		t.Fatal(err)
	}
	// A label that cannot be read for another reason is an error, never a
	// silent start without the worker's profile.
	broken := Kernel{SELinux: Running.SELinux, AppArmor: label("", errors.New("permission denied"))}
	if err := ExecWorker(Expect{"worker", "", WorkerProfile}, broken); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("unreadable AppArmor label: %v", err)
	}
}
