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
	"strconv"
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

// ParseLinkName reads a link pin's name back: the interface index and the
// direction LinkName put in it.
func ParseLinkName(name string) (index int, dir string, ok bool) {
	rest, found := strings.CutPrefix(name, "link_")
	i, d, cut := strings.Cut(rest, "_")
	index, err := strconv.Atoi(i)
	return index, d, found && cut && err == nil && (d == "ingress" || d == "egress")
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

// ErrLocked is wrapped by Lock's error when another enforce holds pinDir.
var ErrLocked = errors.New("another pci-segment enforce holds the pin directory")

// Lock takes the single-instance lock of pinDir, creating the directory:
// an exclusive flock on it, held for as long as the returned file is open
// (across an exec too). The kernel drops it when its holder dies, however.
//
// A directory removed after this process opened it but before it got the
// lock (its holder removes an empty one when it ends) is a lock on nothing:
// the lock counts only when the path still names the directory locked.
func Lock(pinDir string) (*os.File, error) {
	for {
		if err := os.MkdirAll(pinDir, 0o700); err != nil {
			return nil, fmt.Errorf("create pin directory %s: %w", pinDir, err)
		}
		f, err := os.Open(pinDir)
		if errors.Is(err, os.ErrNotExist) {
			continue // its holder removed it as it ended: make it again
		}
		if err != nil {
			return nil, fmt.Errorf("open pin directory %s: %w", pinDir, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w (pid %d)", pinDir, ErrLocked, Holder(pinDir))
			}
			return nil, fmt.Errorf("lock pin directory %s: %w", pinDir, err)
		}
		var locked, named unix.Stat_t
		if unix.Fstat(int(f.Fd()), &locked) == nil && unix.Stat(pinDir, &named) == nil &&
			locked.Dev == named.Dev && locked.Ino == named.Ino {
			return f, nil
		}
		f.Close()
	}
}

// Holder returns the pid holding pinDir's lock, as /proc/locks tells it
// (the kernel's record, which no other process can forge), or 0.
func Holder(pinDir string) int {
	var st unix.Stat_t
	if err := unix.Stat(pinDir, &st); err != nil {
		return 0
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0
	}
	// "1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF"
	inode := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	for _, line := range strings.Split(string(locks), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[5] == inode {
			pid, _ := strconv.Atoi(f[4])
			return pid
		}
	}
	return 0
}

// Layouts lists the layout directories below pinDir that hold pins, each
// with the names of its pins.
func Layouts(pinDir string) (map[string][]string, error) {
	out := map[string][]string{}
	dirs, err := os.ReadDir(pinDir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || !isLayout(d.Name()) {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(pinDir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("read pin directory: %w", err)
		}
		for _, e := range entries {
			out[d.Name()] = append(out[d.Name()], e.Name())
		}
		if len(entries) == 0 {
			out[d.Name()] = []string{}
		}
	}
	return out, nil
}

// isLayout reports whether name is a layout directory's: v and a number.
func isLayout(name string) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "v"))
	return strings.HasPrefix(name, "v") && err == nil && n > 0
}

// loadMaps opens the pinned maps of a layout directory by name (every pin
// that is not a link).
func loadMaps(dir string) (map[string]*ebpf.Map, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	maps := map[string]*ebpf.Map{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			for _, m := range maps {
				m.Close()
			}
			return nil, fmt.Errorf("open pinned map %s: %w", filepath.Join(dir, e.Name()), err)
		}
		maps[e.Name()] = m
	}
	return maps, nil
}

// Detach removes every link and pin of ours under pinDir: links are detached
// from their interfaces first, so enforcement ends even while another process
// still holds a link fd. It returns the links it detached, by pin name. It
// refuses while an enforce holds the directory's lock, which would go on
// reporting (readiness, metrics, status to systemd) that it enforces; it
// holds the lock itself meanwhile, so that none starts.
func Detach(pinDir string, log hclog.Logger) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("detach must run as root (running as uid %d): the pins are root's", os.Geteuid())
	}
	if _, err := os.Stat(pinDir); errors.Is(err, os.ErrNotExist) {
		log.Info("nothing to detach", "pin_dir", pinDir)
		return nil, nil
	}
	lock, err := Lock(pinDir)
	if errors.Is(err, ErrLocked) {
		return nil, fmt.Errorf("%w: stop it first (systemctl stop pci-segment.socket pci-segment.service: the socket would start it again; or SIGTERM to that pid; its pinned links keep enforcing until detach), "+
			"since a running enforce would go on reporting that it enforces", err)
	}
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	layouts, err := Layouts(pinDir)
	if err != nil {
		return nil, err
	}
	if len(layouts) == 0 {
		log.Info("nothing to detach", "pin_dir", pinDir)
		return nil, RemoveIfEmpty(pinDir)
	}
	var errs []error
	var detached []string
	for layout := range layouts {
		links, err := detachLayout(filepath.Join(pinDir, layout), log)
		detached = append(detached, links...)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return detached, err
	}
	return detached, RemoveIfEmpty(pinDir)
}

// detachLayout detaches the links and removes the pins of one layout
// directory, and the directory; it returns the links it detached.
func detachLayout(dir string, log hclog.Logger) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	var errs []error
	var detached []string
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
			} else {
				detached = append(detached, e.Name())
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
	}
	return detached, errors.Join(errs...)
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
		if samePinnedMap(p, m) {
			continue // adopted: the pin is this map's
		}
		if err := m.Pin(p); err != nil {
			return undo(fmt.Errorf("pin map %s: %w", name, err))
		}
		pinned = append(pinned, p)
	}
	for name, l := range links {
		p := filepath.Join(dir, name)
		if samePinnedLink(p, l) {
			continue
		}
		if err := l.Pin(p); err != nil {
			return undo(fmt.Errorf("pin link %s: %w", name, err))
		}
		pinned = append(pinned, p)
	}
	return nil
}

// samePinnedMap and samePinnedLink report whether the pin at p is the
// object itself: an adopted object is pinned there already.
func samePinnedMap(p string, m *ebpf.Map) bool {
	pinned, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return false
	}
	defer pinned.Close()
	a, err1 := pinned.Info()
	b, err2 := m.Info()
	if err1 != nil || err2 != nil {
		return false
	}
	idA, okA := a.ID()
	idB, okB := b.ID()
	return okA && okB && idA == idB
}

func samePinnedLink(p string, l link.Link) bool {
	pinned, err := link.LoadPinnedLink(p, nil)
	if err != nil {
		return false
	}
	defer pinned.Close()
	a, err1 := pinned.Info()
	b, err2 := l.Info()
	return err1 == nil && err2 == nil && a.ID == b.ID
}

// ReadOnlyMaps opens read-only descriptors of the maps in
// bpf.WorkerReadOnly, the evidence the worker reports but must never reset.
func ReadOnlyMaps(objs *bpf.DatapathObjects, bpffs string) (map[string]*ebpf.Map, error) {
	ro := map[string]*ebpf.Map{}
	for name := range bpf.WorkerReadOnly {
		m, err := objs.ByName(name)
		if err == nil {
			ro[name], err = ReadOnly(m, bpffs)
		}
		if err != nil {
			for _, m := range ro {
				m.Close()
			}
			return nil, err
		}
	}
	return ro, nil
}
