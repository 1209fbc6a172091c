package statedir

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pci-segment/pci-segment/testenv"
)

const nobody = 65534

func owner(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode()
}

func TestPrepareGivesTheDirectoriesAndKeepsTheKeysRoots(t *testing.T) {
	testenv.RequireRoot(t)
	top := t.TempDir()
	audit, state, keyDir := filepath.Join(top, "log"), filepath.Join(top, "lib"), filepath.Join(top, "keys")
	// A state directory that exists with the wrong owner and mode is
	// put right, not refused.
	if err := os.Mkdir(state, 0o777); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second finds everything ready
		keys, err := Prepare(audit, state, keyDir, nobody, nobody)
		if err != nil {
			t.Fatal(err)
		}
		keys.Close()
	}
	for _, c := range []struct {
		path     string
		uid      uint32
		wantMode os.FileMode
	}{{audit, nobody, os.ModeDir | AuditMode}, {state, nobody, os.ModeDir | StateMode}, {keyDir, 0, os.ModeDir | keysMode}} {
		uid, gid, mode := owner(t, c.path)
		if uid != c.uid || gid != c.uid || mode != c.wantMode {
			t.Errorf("%s: uid %d gid %d mode %v, want uid/gid %d mode %v", c.path, uid, gid, mode, c.uid, c.wantMode)
		}
	}
}

func TestPrepareRefusesSymlinksAndAForeignKeyDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	top := t.TempDir()
	elsewhere := filepath.Join(top, "elsewhere")
	os.Mkdir(elsewhere, 0o700)
	if err := os.Symlink(elsewhere, filepath.Join(top, "log")); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(filepath.Join(top, "log"), filepath.Join(top, "lib"), filepath.Join(top, "keys"), nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a symlinked audit directory: %v, want a refusal naming the symlink", err)
	}
	if uid, _, _ := owner(t, elsewhere); uid != 0 {
		t.Errorf("the symlink's target was given to uid %d", uid)
	}

	keyDir := filepath.Join(top, "keys2")
	os.Mkdir(keyDir, 0o700)
	os.Chown(keyDir, nobody, nobody)
	_, err = Prepare(filepath.Join(top, "log2"), filepath.Join(top, "lib2"), keyDir, nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "must be root's alone") {
		t.Errorf("a key directory the account owns: %v, want a refusal", err)
	}
	// One that exists, root's but readable by others, is refused, not
	// quietly narrowed: --key-dir /etc must not chmod /etc.
	wide := filepath.Join(top, "wide")
	os.Mkdir(wide, 0o755)
	os.Chmod(wide, 0o755)
	_, err = Prepare(filepath.Join(top, "log4"), filepath.Join(top, "lib4"), wide, nobody, nobody)
	if _, _, mode := owner(t, wide); err == nil || !strings.Contains(err.Error(), "chmod 0700") || mode.Perm() != 0o755 {
		t.Errorf("an existing 0755 key directory: %v, mode now %v; want a refusal that leaves it", err, mode)
	}
	if _, err := Prepare(filepath.Join(top, "log5"), filepath.Join(top, "lib5"), "keys", nobody, nobody); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("a relative key directory: %v, want a refusal", err)
	}
	// A root's symbolic link on the way (/var/lib elsewhere) is followed.
	real := filepath.Join(top, "real")
	os.Mkdir(real, 0o755)
	if err := os.Symlink(real, filepath.Join(top, "link")); err != nil {
		t.Fatal(err)
	}
	keys, err := Prepare(filepath.Join(top, "log6"), filepath.Join(top, "lib6"), filepath.Join(top, "link", "keys"), nobody, nobody)
	if err != nil {
		t.Errorf("a key directory below a root's symlink: %v", err)
	} else {
		keys.Close()
	}
	if err := os.Symlink(elsewhere, filepath.Join(top, "keys3")); err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(filepath.Join(top, "log3"), filepath.Join(top, "lib3"), filepath.Join(top, "keys3"), nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a symlinked key directory: %v, want a refusal naming the symlink", err)
	}
}

// The account owns its state directory, so it could rename a key
// directory kept there and put its own in its place: a key directory in
// any directory someone other than root can change is refused, naming
// the flag.
func TestPrepareRefusesAKeyDirectoryTheAccountCouldSwap(t *testing.T) {
	testenv.RequireRoot(t)
	top := t.TempDir()
	state := filepath.Join(top, "lib")
	_, err := Prepare(filepath.Join(top, "log"), state, filepath.Join(state, "audit-keys"), nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "--key-dir") || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("a key directory in the account's state directory: %v, want a refusal", err)
	}
	// Through a root's symlink into a directory the account owns.
	if err := os.Symlink(state, filepath.Join(top, "via")); err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(filepath.Join(top, "log3"), state, filepath.Join(top, "via", "keys"), nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("a key directory through a symlink into the account's directory: %v, want a refusal", err)
	}
	open := filepath.Join(top, "open")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	_, err = Prepare(filepath.Join(top, "log2"), filepath.Join(top, "lib2"), filepath.Join(open, "keys"), nobody, nobody)
	if err == nil || !strings.Contains(err.Error(), "someone other than root can change") {
		t.Errorf("a key directory in a world-writable directory: %v, want a refusal", err)
	}
}

func TestNewChainKeepsTheAuditorsCopy(t *testing.T) {
	testenv.RequireRoot(t)
	top := t.TempDir()
	keyDir := filepath.Join(top, "keys")
	keys, err := Prepare(filepath.Join(top, "log"), filepath.Join(top, "lib"), keyDir, nobody, nobody)
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	chain, key, name, err := NewChain(keys)
	if err != nil {
		t.Fatal(err)
	}
	if name != hex.EncodeToString(chain[:])+".key" || key == ([32]byte{}) {
		t.Fatalf("chain %x key %x in %s", chain, key, name)
	}
	p := filepath.Join(keyDir, name)
	b, err := os.ReadFile(p)
	if err != nil || string(b) != hex.EncodeToString(key[:])+"\n" {
		t.Errorf("%s holds %q (%v), want the key in hex", p, b, err)
	}
	if uid, _, mode := owner(t, p); uid != 0 || mode != 0o400 {
		t.Errorf("%s: uid %d mode %v, want root's, 0400", p, uid, mode)
	}
	if c2, _, _, err := NewChain(keys); err != nil || c2 == chain {
		t.Errorf("a second chain: %x, %v", c2, err)
	}
}
