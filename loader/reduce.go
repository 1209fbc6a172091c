package loader

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/privilege"
)

// keptCaps are the capabilities the loader keeps once the programs are
// loaded and the directories made: to start a new worker (SETUID, SETGID
// to change identity; SETPCAP to empty the worker's bounding set; KILL to
// stop a worker of another uid) and to attach to interfaces (BPF,
// NET_ADMIN). PERFMON (needed by the verifier at load), CHOWN (the audit
// directory) and every other capability are gone.
var keptCaps = []privilege.Cap{privilege.CapBPF, privilege.CapNetAdmin, privilege.CapSetuid,
	privilege.CapSetgid, privilege.CapSetpcap, privilege.CapKill}

// self is the running binary, whatever has happened to its path since: the
// loader re-executes it and starts the worker from it.
const self = "/proc/self/exe"

// objectsEnv carries the loaded objects' descriptors across the re-exec.
// It lacks the PCI_SEGMENT_ prefix so that it never reaches the worker.
const objectsEnv = "_PCI_SEGMENT_LOADER_OBJECTS"

// readOnlySuffix names a read-only descriptor passed by reduce.
const readOnlySuffix = "_ro"

// reduce re-executes the loader with the bounding set cut to keptCaps and
// the inheritable and ambient sets empty. Capabilities are per thread and a
// Go process has many threads, so the only way to drop them from the whole
// process is an exec from a thread whose sets are cut: the new image gets
// exactly those. The loaded programs and maps survive as inherited
// descriptors, named in objectsEnv, with read-only twins of the maps the
// worker must not write. It returns only on error.
func reduce(objs *bpf.DatapathObjects, bpffs string, lock, keys, listener *os.File) error {
	var fds []string
	add := func(name string, fd int) error {
		// Inherited only by this exec: the re-executed loader marks
		// them close-on-exec again when it adopts them.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return fmt.Errorf("pass %s across exec: %w", name, err)
		}
		fds = append(fds, name+"="+strconv.Itoa(fd))
		return nil
	}
	for name, m := range objs.All() {
		if err := add(name, m.FD()); err != nil {
			return err
		}
	}
	for name := range bpf.WorkerReadOnly {
		m, err := objs.ByName(name)
		if err != nil {
			return err
		}
		ro, err := pins.ReadOnly(m, bpffs)
		if err != nil {
			return err
		}
		if err := add(name+readOnlySuffix, ro.FD()); err != nil {
			return err
		}
		// Held to the exec: a map nothing refers to is closed by its
		// finalizer, and the number passed on would name another file.
		defer runtime.KeepAlive(ro)
	}
	for name, p := range map[string]*ebpf.Program{bpf.DatapathProgPciIngress: objs.PciIngress, bpf.DatapathProgPciEgress: objs.PciEgress} {
		if err := add(name, p.FD()); err != nil {
			return err
		}
	}
	if err := add(lockName, int(lock.Fd())); err != nil {
		return err
	}
	if err := add(keysName, int(keys.Fd())); err != nil {
		return err
	}
	if listener != nil {
		if err := add(listenerName, int(listener.Fd())); err != nil {
			return err
		}
	}
	env := append(os.Environ(), objectsEnv+"="+strings.Join(fds, ","))
	runtime.LockOSThread() // never unlocked: exec replaces the process
	if err := privilege.LimitThread(privilege.CapMask(keptCaps...)); err != nil {
		return err
	}
	return fmt.Errorf("re-execute loader with reduced capabilities: %w", unix.Exec(self, os.Args, env))
}

// checkReduced confirms, after the re-exec, that every thread's sets are
// what reduce meant: permitted and effective exactly keptCaps, nothing
// inheritable or ambient. (Threads started after an exec copy the first.)
func checkReduced() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c, err := privilege.CurrentCaps()
	if err != nil {
		return err
	}
	want := privilege.CapMask(keptCaps...)
	if c.Permitted != want || c.Effective != want || c.Inheritable != 0 || c.Ambient != 0 {
		return fmt.Errorf("after dropping capabilities the loader holds permitted %v, effective %v, inheritable %v, ambient %v; want %v and nothing inheritable or ambient",
			privilege.CapNames(c.Permitted), privilege.CapNames(c.Effective), privilege.CapNames(c.Inheritable), privilege.CapNames(c.Ambient), privilege.CapNames(want))
	}
	return nil
}

// lockName and keysName name the single-instance lock and the audit key
// directory among the passed descriptors.
const (
	lockName     = "lock"
	keysName     = "keys"
	listenerName = "listener"
)

// passed is what a reduce hands the re-executed loader.
type passed struct {
	objs *bpf.DatapathObjects
	// readOnly holds read-only descriptors of the maps in
	// bpf.WorkerReadOnly.
	readOnly             map[string]*ebpf.Map
	lock, keys, listener *os.File
}

// adopt takes the objects a reduce passed on, checking each before use, the
// read-only descriptors by map name, and the lock.
func adopt(spec string, sizes bpf.Sizes) (*passed, error) {
	os.Unsetenv(objectsEnv)
	p := &passed{objs: &bpf.DatapathObjects{}, readOnly: map[string]*ebpf.Map{}}
	maps := map[string]*ebpf.Map{}
	for _, kv := range strings.Split(spec, ",") {
		name, v, ok := strings.Cut(kv, "=")
		fd, err := strconv.Atoi(v)
		if !ok || err != nil || fd < 3 {
			return nil, fmt.Errorf("%s: malformed entry %q", objectsEnv, kv)
		}
		unix.CloseOnExec(fd)
		switch name {
		case lockName:
			p.lock = os.NewFile(uintptr(fd), "pin directory lock")
		case keysName:
			p.keys = os.NewFile(uintptr(fd), "audit key directory")
		case listenerName:
			p.listener = os.NewFile(uintptr(fd), "metrics listener")
		case bpf.DatapathProgPciIngress, bpf.DatapathProgPciEgress:
			prog, err := ebpf.NewProgramFromFD(fd)
			if err != nil {
				return nil, fmt.Errorf("adopt program %s: %w", name, err)
			}
			if info, err := prog.Info(); err != nil || info.Type != ebpf.SchedCLS || info.Name != name {
				return nil, fmt.Errorf("adopt program %s: not the datapath's program", name)
			}
			if name == bpf.DatapathProgPciIngress {
				p.objs.PciIngress = prog
			} else {
				p.objs.PciEgress = prog
			}
		default:
			m, err := ebpf.NewMapFromFD(fd)
			if err != nil {
				return nil, fmt.Errorf("adopt map %s: %w", name, err)
			}
			into, mapName := maps, name
			if base, ok := strings.CutSuffix(name, readOnlySuffix); ok && bpf.WorkerReadOnly[base] {
				into, mapName = p.readOnly, base
			}
			if err := bpf.Check(m, mapName, sizes); err != nil {
				return nil, err
			}
			into[mapName] = m
		}
	}
	if err := p.objs.DatapathMaps.Set(maps); err != nil {
		return nil, err
	}
	if p.objs.PciIngress == nil || p.objs.PciEgress == nil || len(p.readOnly) != len(bpf.WorkerReadOnly) || p.lock == nil || p.keys == nil {
		return nil, fmt.Errorf("%s: programs, read-only maps, the lock or the key directory missing", objectsEnv)
	}
	return p, nil
}
