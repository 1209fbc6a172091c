package lab

import (
	"bytes"
	"os/exec"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/testenv"
)

// ServiceAccount creates a system group and a system user of the same
// unique name (pcs-<hex>), the user's primary group being that group, with
// no home directory and no login shell, like the production `pci-segment`
// account. Both are removed in t.Cleanup. It needs root (see New).
func ServiceAccount(t testing.TB) (user, group string) {
	t.Helper()
	testenv.RequireRoot(t)
	name := "pcs-" + randomHex(t, 6)

	// Registered first, so that a half-made account is removed too.
	t.Cleanup(func() {
		if exists("passwd", name) {
			if out, err := shadowTool("userdel", name); err != nil {
				t.Errorf("lab cleanup: %v", describe("userdel", []string{name}, out, err))
			}
		}
		// userdel removes a group named like the user on Debian
		// (USERGROUPS_ENAB); remove it when it is still there.
		if exists("group", name) {
			if out, err := shadowTool("groupdel", name); err != nil {
				t.Errorf("lab cleanup: %v", describe("groupdel", []string{name}, out, err))
			}
		}
	})

	steps := [][]string{
		{"groupadd", "--system", name},
		{"useradd", "--system", "--gid", name, "--no-create-home", "--shell", "/usr/sbin/nologin", name},
	}
	for _, s := range steps {
		if out, err := shadowTool(s[0], s[1:]...); err != nil {
			t.Fatalf("lab: %v", describe(s[0], s[1:], out, err))
		}
	}
	return name, name
}

// shadowTool runs a shadow-utils command, retrying while another process
// (a test binary running in parallel) holds the lock on /etc/passwd or
// /etc/group.
func shadowTool(name string, args ...string) ([]byte, error) {
	var out []byte
	var err error
	for range 50 {
		out, err = run(name, args...)
		if err == nil || !bytes.Contains(out, []byte("lock")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return out, err
}

// exists reports whether getent finds key in database.
func exists(database, key string) bool {
	return exec.Command("getent", database, key).Run() == nil
}
