// Package statedir prepares, as root, the only directories the worker
// writes (its audit and state directories, given to the service account),
// and keeps in the state directory a root-only directory of the audit
// chains' first keys: the auditor's copy, written by the loader before the
// worker sees a key, through a descriptor opened while the loader could
// still make the directory (it later holds no CAP_DAC_OVERRIDE, so it could
// not traverse the account's directory by path).
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Modes of the directories. The state directory lets others pass (not
// list), so that the loader, root without CAP_DAC_*, reaches its key
// directory.
const (
	AuditMode = 0o750
	StateMode = 0o751
	keysMode  = 0o700
)

// KeyDir is the root-only directory, in the state directory, of the first
// keys of the audit chains the loader started.
const KeyDir = "audit-keys"

// Prepare makes the audit and state directories the account's (uid, gid)
// with the modes above, and returns the key directory, open. As
// tmpfiles.d/pci-segment.conf leaves them, nothing changes and no
// capability is used; otherwise root takes each for a moment (CAP_CHOWN),
// so that the mode can be set and the key directory made without
// CAP_FOWNER or CAP_DAC_OVERRIDE, then gives it to the account.
func Prepare(auditDir, stateDir string, uid, gid uint32) (*os.File, error) {
	var keys *os.File
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
		ready := unix.Fstat(fd, &st) == nil && st.Uid == uid && st.Gid == gid && st.Mode&0o7777 == d.mode
		if ready && d.what == "state" {
			if keys, err = keyDir(fd, false); err != nil {
				ready = false
			}
		}
		if !ready {
			err = unix.Fchownat(fd, "", 0, 0, unix.AT_EMPTY_PATH)
			if err == nil {
				err = unix.Fchmodat(fd, ".", d.mode, 0)
			}
			if err == nil && d.what == "state" {
				keys, err = keyDir(fd, true)
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
	return keys, nil
}

// keyDir opens, after making it when make is set, the root-only key
// directory in the state directory open as parent.
func keyDir(parent int, make bool) (*os.File, error) {
	if make {
		if err := unix.Mkdirat(parent, KeyDir, keysMode); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("make %s: %w", KeyDir, err)
		}
	}
	fd, err := unix.Openat(parent, KeyDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s (a symlink is refused): %w", KeyDir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s in the state directory is not root's (uid %d): remove it; the loader makes it", KeyDir, st.Uid)
	}
	if err := unix.Fchmod(fd, keysMode); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("restrict %s: %w", KeyDir, err)
	}
	return os.NewFile(uintptr(fd), KeyDir), nil
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
