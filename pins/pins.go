// Package pins holds the layout of pci-segment's objects on the bpf
// filesystem: a directory per layout version below --pin-dir, with the
// datapath's maps by name and one link per interface and direction. The
// loader pins there; detach, status and check --live read it.
package pins

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
)

// DefaultDir is where pins live unless --pin-dir says otherwise; the
// layout version is a directory below it.
const DefaultDir = "/sys/fs/bpf/pci-segment"

// LayoutDir is the directory of pins of this binary's layout.
func LayoutDir(pinDir string) string { return filepath.Join(pinDir, bpf.Layout) }

// LinkName names a link's pin by interface index and direction: bpffs
// refuses '.' in names, which interface names may contain.
func LinkName(index int, dir string) string {
	return fmt.Sprintf("link_%d_%s", index, dir)
}

// CheckFS makes sure pins would land on a bpf filesystem: on anything
// else they would not survive the loader. It returns the nearest existing
// directory of pinDir (pinDir itself, or the ancestor it will be made in).
func CheckFS(pinDir string) (string, error) {
	dir := pinDir
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return "", fmt.Errorf("%s is not on a bpf filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` (systemd does this at boot) or choose --pin-dir inside one; under `ip netns exec`, which remounts /sys, use `nsenter --net=/run/netns/NAME` instead", dir)
			}
			return dir, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("inspect pin directory %s: %w", dir, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("inspect pin directory %s: %w", pinDir, err)
		}
		dir = parent
	}
}

// RefuseExisting stops a second enforce from taking over pins it did not
// create: they belong to a running instance or to enforcement left in place.
func RefuseExisting(pinDir string) error {
	entries, err := os.ReadDir(LayoutDir(pinDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect pin directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("pins already exist in %s: another pci-segment enforce is running or left enforcement in place; stop it and run `pci-segment detach --pin-dir %s` first", LayoutDir(pinDir), pinDir)
	}
	return nil
}

// Detach removes every link and pin of ours under pinDir: links are detached
// from their interfaces first, so enforcement ends even while another process
// still holds a link fd.
func Detach(pinDir string, log hclog.Logger) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("detach must run as root (running as uid %d): the pins are root's", os.Geteuid())
	}
	dir := LayoutDir(pinDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("nothing to detach", "pin_dir", dir)
		return RemoveIfEmpty(pinDir)
	}
	if err != nil {
		return fmt.Errorf("read pin directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), "link_") {
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("open pinned link %s: %w", p, err))
				continue
			}
			if err := l.Detach(); err != nil {
				errs = append(errs, fmt.Errorf("detach %s: %w", p, err))
			}
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", p, err))
			}
			l.Close()
			log.Info("detached", "link", e.Name())
			continue
		}
		if err := os.Remove(p); err != nil {
			errs = append(errs, fmt.Errorf("remove pin %s: %w", p, err))
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
		}
		if err := RemoveIfEmpty(pinDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func RemoveIfEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	if len(entries) == 0 {
		if err := os.Remove(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

// ReadOnly opens a read-only descriptor of m. The kernel offers two ways:
// by id, which takes CAP_SYS_ADMIN, and through a pin, which takes only
// the right to the pin. So m is pinned for a moment in a fresh directory
// of the bpffs, opened from there with BPF_F_RDONLY, and unpinned. The
// name has no dot: bpffs refuses dots in names (EPERM).
func ReadOnly(m *ebpf.Map, bpffs string) (*ebpf.Map, error) {
	dir, err := os.MkdirTemp(bpffs, "pci-segment-ro-")
	if err != nil {
		return nil, fmt.Errorf("make a directory for a read-only map descriptor: %w", err)
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "map")
	if err := m.Pin(p); err != nil {
		return nil, fmt.Errorf("pin map for a read-only descriptor: %w", err)
	}
	defer m.Unpin()
	ro, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open read-only descriptor of map: %w", err)
	}
	return ro, nil
}

// Pin pins the maps, then the links, each by name, under the layout
// directory of pinDir; on failure it removes what it pinned. Links go last:
// once a link is pinned it enforces on its own.
func Pin(pinDir string, maps map[string]*ebpf.Map, links map[string]link.Link) error {
	dir := LayoutDir(pinDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin directory (is bpffs mounted at /sys/fs/bpf?): %w", err)
	}
	var pinned []string
	undo := func(err error) error {
		for _, p := range pinned {
			os.Remove(p)
		}
		return err
	}
	for name, m := range maps {
		p := filepath.Join(dir, name)
		if err := m.Pin(p); err != nil {
			return undo(fmt.Errorf("pin map %s: %w", name, err))
		}
		pinned = append(pinned, p)
	}
	for name, l := range links {
		p := filepath.Join(dir, name)
		if err := l.Pin(p); err != nil {
			return undo(fmt.Errorf("pin link %s: %w", name, err))
		}
		pinned = append(pinned, p)
	}
	return nil
}
