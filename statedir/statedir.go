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
	"io/fs"
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
// that only root can change any directory above it: before making it, to
// say so before anything is made, and again after, when every part exists
// (one another user made in a sticky directory meanwhile shows then). A
// directory that exists is taken only if it is root's and no one else's.
func openKeyDir(dir string) (*os.File, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("the key directory %q (--key-dir) must be an absolute path", dir)
	}
	if err := rootsAlone(dir); err != nil {
		return nil, err
	}
	_, err := os.Lstat(dir)
	made := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, keysMode); err != nil {
		return nil, fmt.Errorf("create the key directory %s (--key-dir; systemd-tmpfiles --create makes it): %w", dir, err)
	}
	if err := rootsAlone(dir); err != nil {
		return nil, err
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the key directory %s (a symlink is refused): %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != 0 || !made && st.Mode&0o077 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("the key directory %s (uid %d, mode %#o) must be root's alone: chown root: and chmod 0700 it, or remove it for the loader to make",
			dir, st.Uid, st.Mode&0o7777)
	}
	if made {
		if err := unix.Fchmod(fd, keysMode); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("restrict the key directory %s: %w", dir, err)
		}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// rootsAlone checks that no one but root can change the directories above
// dir, as written and with its symbolic links followed: each is root's
// and writable by no one else, or sticky (as /tmp, where no one renames
// another's entry); a symbolic link on the way must be root's. Parts that
// do not exist yet are skipped.
func rootsAlone(dir string) error {
	parent := filepath.Dir(dir)
	paths := []string{parent}
	for p := parent; ; p = filepath.Dir(p) {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			paths = append(paths, real)
			break
		}
		if p == "/" {
			break
		}
	}
	for _, top := range paths {
		for p := top; ; p = filepath.Dir(p) {
			var st unix.Stat_t
			err := unix.Lstat(p, &st)
			switch {
			case errors.Is(err, unix.ENOENT):
			case err != nil:
				return fmt.Errorf("inspect %s, above the key directory: %w", p, err)
			case st.Uid != 0 || st.Mode&unix.S_IFMT != unix.S_IFLNK && st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
				return fmt.Errorf("the key directory %s lies in %s (uid %d, mode %#o), which someone other than root can change: "+
					"whoever can could swap the auditor's keys for their own; give --key-dir a place only root can change, like /var/lib/pci-segment-keys",
					dir, p, st.Uid, st.Mode&0o7777)
			}
			if p == "/" {
				break
			}
		}
	}
	return nil
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
