// Package statedir prepares, as root, the only directories the worker
// writes (its audit and state directories, given to the service account),
// and the root-only key directory of the audit chains' first keys: the
// auditor's copy, written by the loader before the worker sees a key,
// through a descriptor opened at start. The key directory lies outside
// the account's directories, and every directory above it is root's: an
// account that owns a parent could rename the key directory away and put
// one of its own, holding keys of its choosing, in its place.
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Modes of the directories.
const (
	AuditMode = 0o750
	StateMode = 0o750
	keysMode  = 0o700
)

// Prepare makes the audit and state directories the account's (uid, gid)
// with the modes above, and the key directory root's, and returns the key
// directory, open. As tmpfiles.d/pci-segment.conf leaves them, nothing
// changes and no capability is used; otherwise root takes each account
// directory for a moment (CAP_CHOWN), so that the mode can be set without
// CAP_FOWNER, then gives it to the account.
func Prepare(auditDir, stateDir, keyDir string, uid, gid uint32) (*os.File, error) {
	for _, d := range []struct {
		path, what string
		mode       uint32
	}{{auditDir, "audit", AuditMode}, {stateDir, "state", StateMode}} {
		if err := os.MkdirAll(d.path, os.FileMode(d.mode)); err != nil {
			return nil, fmt.Errorf("create %s directory: %w", d.what, err)
		}
		// Opened without following a symlink, then changed through the
		// fd: a path a worker could have replaced never redirects root's
		// chown. O_PATH: root without CAP_DAC_* may not read the
		// account's directory, only look at it.
		fd, err := unix.Open(d.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s directory %s (a symlink is refused): %w", d.what, d.path, err)
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) != nil || st.Uid != uid || st.Gid != gid || st.Mode&0o7777 != d.mode {
			err = unix.Fchownat(fd, "", 0, 0, unix.AT_EMPTY_PATH)
			if err == nil {
				err = unix.Fchmodat(fd, ".", d.mode, 0)
			}
			if err == nil {
				err = unix.Fchownat(fd, "", int(uid), int(gid), unix.AT_EMPTY_PATH)
			}
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				err = fmt.Errorf("%w: without CAP_CHOWN the directories must exist as tmpfiles.d/pci-segment.conf makes them (systemd-tmpfiles --create)", err)
			}
		}
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("give %s directory %s to uid %d gid %d: %w", d.what, d.path, uid, gid, err)
		}
	}
	return openKeyDir(keyDir)
}

// openKeyDir makes and opens the root-only key directory, after checking
// that only root can change any directory above it.
func openKeyDir(dir string) (*os.File, error) {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		var st unix.Stat_t
		err := unix.Lstat(p, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
			continue // made below, root's
		case err != nil:
			return nil, fmt.Errorf("inspect %s, above the key directory: %w", p, err)
		}
		// A sticky directory (/tmp) lets no one else rename root's entries.
		if st.Uid != 0 || st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return nil, fmt.Errorf("the key directory %s lies in %s (uid %d, mode %#o), which someone other than root can change: "+
				"whoever can could swap the auditor's keys for their own; give --key-dir a place only root can change, like /var/lib/pci-segment-keys",
				dir, p, st.Uid, st.Mode&0o7777)
		}
		if p == "/" || p == "." {
			break
		}
	}
	if err := os.MkdirAll(dir, keysMode); err != nil {
		return nil, fmt.Errorf("create the key directory (--key-dir): %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the key directory %s (a symlink is refused): %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("the key directory %s is not root's (uid %d): remove it; the loader makes it", dir, st.Uid)
	}
	if err := unix.Fchmod(fd, keysMode); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("restrict the key directory %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// NewChain makes a new audit chain's id and first key and keeps the
// auditor's copy, synced, in the key directory keys as CHAIN.key (hex),
// never replacing one; it returns the file's name.
func NewChain(keys *os.File) (chain [16]byte, key [32]byte, name string, err error) {
	if _, err = rand.Read(chain[:]); err == nil {
		_, err = rand.Read(key[:])
	}
	if err != nil {
		return chain, key, "", err
	}
	name = hex.EncodeToString(chain[:]) + ".key"
	fd, err := unix.Openat(int(keys.Fd()), name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err == nil {
		f := os.NewFile(uintptr(fd), name)
		_, err = f.WriteString(hex.EncodeToString(key[:]) + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return chain, key, "", fmt.Errorf("keep the auditor's copy of a new audit chain's first key: %w", err)
	}
	return chain, key, name, nil
}
