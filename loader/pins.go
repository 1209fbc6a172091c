package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
)

// DefaultPinDir is where pins live unless --pin-dir says otherwise; the
// layout version is a directory below it.
const DefaultPinDir = "/sys/fs/bpf/pci-segment"

// layoutDir is the directory of pins of this binary's layout.
func layoutDir(pinDir string) string { return filepath.Join(pinDir, bpf.Layout) }

// linkPinName names a link's pin by interface index and direction: bpffs
// refuses '.' in names, which interface names may contain.
func linkPinName(index int, dir string) string {
	return fmt.Sprintf("link_%d_%s", index, dir)
}

// checkBPFFS makes sure pins would land on a bpf filesystem: on anything
// else they would not survive the loader.
func checkBPFFS(pinDir string) error {
	dir := pinDir
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			if st.Type != unix.BPF_FS_MAGIC {
				return fmt.Errorf("%s is not on a bpf filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` (systemd does this at boot) or choose --pin-dir inside one; under `ip netns exec`, which remounts /sys, use `nsenter --net=/run/netns/NAME` instead", dir)
			}
			return nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("inspect pin directory %s: %w", dir, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("inspect pin directory %s: %w", pinDir, err)
		}
		dir = parent
	}
}

// refuseExistingPins stops a second enforce from taking over pins it did not
// create: they belong to a running instance or to enforcement left in place.
func refuseExistingPins(pinDir string) error {
	entries, err := os.ReadDir(layoutDir(pinDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect pin directory: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("pins already exist in %s: another pci-segment enforce is running or left enforcement in place; stop it and run `pci-segment detach --pin-dir %s` first", layoutDir(pinDir), pinDir)
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
	dir := layoutDir(pinDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("nothing to detach", "pin_dir", dir)
		return removeIfEmpty(pinDir)
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
		if err := removeIfEmpty(pinDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeIfEmpty(dir string) error {
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

// readOnlyFD opens a second, read-only descriptor of m
// (BPF_MAP_GET_FD_BY_ID with BPF_F_RDONLY), which cilium/ebpf does not
// offer for maps that are not pinned yet.
func readOnlyFD(m *ebpf.Map) (int, error) {
	info, err := m.Info()
	if err != nil {
		return -1, fmt.Errorf("read map info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return -1, errors.New("kernel did not report a map id")
	}
	attr := struct{ id, nextID, openFlags uint32 }{id: uint32(id), openFlags: unix.BPF_F_RDONLY}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_GET_FD_BY_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, fmt.Errorf("open read-only descriptor of map %d: %w", id, errno)
	}
	unix.CloseOnExec(int(fd))
	return int(fd), nil
}
