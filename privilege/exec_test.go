package privilege

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/testenv"
)

// The binary children run from must be root's alone: whoever could write
// it would write the next child's code. It is held at fd 10 or above, out
// of the way of a child's own descriptors.
func TestOpenExecutableIsRootsAlone(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	mk := func(name string, mode uint32, uid int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, 0); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(p, mode); err != nil { // raw bits: setuid too
			t.Fatal(err)
		}
		return p
	}
	good := mk("good", 0o755, 0)
	f, err := OpenExecutable(good)
	if err != nil {
		t.Fatalf("a root 0755 binary refused: %v", err)
	}
	if f.Fd() < 10 {
		t.Errorf("held on fd %d, where a child's own descriptors go", f.Fd())
	}
	if flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("held without close-on-exec (flags %d, %v): a child would inherit it", flags, err)
	}
	f.Close()
	for name, p := range map[string]string{
		"writable by all":   mk("w-all", 0o757, 0),
		"writable by group": mk("w-group", 0o775, 0),
		"the account's":     mk("nobody", 0o755, 65534),
		"setuid":            mk("setuid", 0o4755, 0),
		"setgid":            mk("setgid", 0o2755, 0),
		"not executable":    mk("noexec", 0o750, 0),
		"a directory":       dir,
		"missing":           filepath.Join(dir, "missing"),
	} {
		if f, err := OpenExecutable(p); err == nil {
			f.Close()
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want it to name %s", name, err, p)
		}
	}
}

// inheritChildEnv makes the test binary a child started with two
// inherited descriptors, 3 and 4, that keeps 4.
const inheritChildEnv = "PCI_SEGMENT_TEST_INHERIT_CHILD"

func inheritChild() int {
	own, err := os.Open(os.DevNull) // close-on-exec, as Go opens everything
	if err != nil {
		fmt.Println(err)
		return 1
	}
	if err := CloseInherited(os.NewFile(4, "kept")); err != nil {
		fmt.Println(err)
		return 1
	}
	for _, fd := range []uintptr{3, 4, own.Fd()} {
		_, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
		fmt.Printf("fd%d=%v ", fd, err == nil)
	}
	return 0
}

// What a process inherited goes, but for the one it keeps; what it opened
// itself stays.
func TestCloseInheritedClosesWhatTheParentLeft(t *testing.T) {
	a, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), inheritChildEnv+"=1")
	cmd.ExtraFiles = []*os.File{a, b} // 3 and 4, without close-on-exec
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	got := string(out)
	if !strings.Contains(got, "fd3=false fd4=true") || strings.Count(got, "=true") != 2 {
		t.Errorf("child reports %q: want fd 3 closed, fd 4 kept, its own file open", got)
	}
}
