// Package selinux holds the SELinux policy module for pci-segment
// (pci_segment.te, .fc, .if, and pci_segment_pins.cil for the pins' label
// by path): a domain for the loader, pci_segment_t, and a narrower, bounded
// one for the worker, pci_segment_worker_t; and the verification of a
// process's domain. These tests compile the module with Debian's policy
// development tool chain and link it into Debian's default policy.
package selinux

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

func TestModuleCompiles(t *testing.T) {
	buildModule(t, "")
}

// buildModule compiles the module, with extra appended to the .te, and
// returns the package.
func buildModule(t *testing.T, extra string) string {
	t.Helper()
	const makefile = "/usr/share/selinux/devel/Makefile"
	if _, err := os.Stat(makefile); err != nil {
		testenv.Unavailable(t, "SELinux policy development files not installed (Debian package selinux-policy-dev)")
	}
	dir := t.TempDir()
	for _, f := range []string{"pci_segment.te", "pci_segment.fc", "pci_segment.if"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f == "pci_segment.te" {
			b = append(b, extra...)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	out, err := exec.Command("make", "-C", dir, "-f", makefile, "pci_segment.pp").CombinedOutput()
	if err != nil {
		t.Fatalf("build the module: %v\n%s", err, out)
	}
	pp := filepath.Join(dir, "pci_segment.pp")
	if st, err := os.Stat(pp); err != nil || st.Size() == 0 {
		t.Fatalf("no module package: %v", err)
	}
	return pp
}

// The module and the pins' CIL link into Debian's whole default policy,
// with the type bound checked (expand-check: the worker's domain holds
// nothing its parent, the loader's, does not). A copy of the policy store
// is used; the host's is never changed. The control adds one permission
// to the worker alone, which the check must refuse.
func TestModuleLinksIntoThePolicyWithinItsBounds(t *testing.T) {
	testenv.RequireRoot(t)
	const store = "/var/lib/selinux/default"
	if _, err := os.Stat(store); err != nil {
		testenv.Unavailable(t, "no SELinux policy store at "+store+" (Debian package selinux-policy-default)")
	}
	link := func(pp string) (string, error) {
		root := t.TempDir()
		for _, d := range []string{"var/lib/selinux", "etc/selinux"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		if out, err := exec.Command("cp", "-a", store, filepath.Join(root, "var/lib/selinux/")).CombinedOutput(); err != nil {
			t.Fatalf("copy the policy store: %v\n%s", err, out)
		}
		exec.Command("cp", "-a", "/etc/selinux/default", filepath.Join(root, "etc/selinux/")).Run()
		conf, _ := os.ReadFile("/etc/selinux/semanage.conf")
		os.WriteFile(filepath.Join(root, "etc/selinux/semanage.conf"), append(conf, "\nexpand-check=1\n"...), 0o644)
		out, err := exec.Command("semodule", "-p", root, "-s", "default", "-n", "-i", pp, "-i", "pci_segment_pins.cil").CombinedOutput()
		if err == nil {
			kern := filepath.Join(root, "var/lib/selinux/default/active/policy.kern")
			b, rerr := os.ReadFile(kern)
			if rerr != nil || !bytes.Contains(b, []byte("/pci-segment")) {
				t.Errorf("the linked policy holds no genfscon path /pci-segment (%v)", rerr)
			}
			// Both entries work under NoNewPrivs: systemd's into the
			// loader's domain (the unit sets NoNewPrivileges=yes), the
			// loader's into the worker's.
			for _, q := range [][2]string{{"init_t", "pci_segment_t"}, {"pci_segment_t", "pci_segment_worker_t"}} {
				rules, serr := exec.Command("sesearch", "-A", "-s", q[0], "-t", q[1], "-c", "process2", "-p", "nnp_transition", kern).CombinedOutput()
				if serr != nil || !strings.Contains(string(rules), "nnp_transition") {
					t.Errorf("no nnp_transition from %s to %s in the linked policy: %v\n%s", q[0], q[1], serr, rules)
				}
			}
			// The auditor's keys: the loader writes them, the worker may
			// not so much as look.
			rules, serr := exec.Command("sesearch", "-A", "-s", "pci_segment_t", "-t", "pci_segment_keys_t", "-c", "file", "-p", "create", kern).CombinedOutput()
			if serr != nil || !strings.Contains(string(rules), "create") {
				t.Errorf("the loader may not create key files: %v\n%s", serr, rules)
			}
			if rules, _ := exec.Command("sesearch", "-A", "-s", "pci_segment_worker_t", "-t", "pci_segment_keys_t", kern).CombinedOutput(); strings.Contains(string(rules), "allow") {
				t.Errorf("the worker's domain has rights on the key directory:\n%s", rules)
			}
		}
		return string(out), err
	}
	if out, err := link(buildModule(t, "")); err != nil {
		t.Fatalf("link the module into the default policy: %v\n%s", err, out)
	}
	out, err := link(buildModule(t, "\nallow pci_segment_worker_t self:rawip_socket create;\n"))
	if err == nil || !strings.Contains(out, "exceeds bounds of parent pci_segment_t") {
		t.Errorf("a worker permission beyond the loader's linked: %v\n%s", err, out)
	}
}
