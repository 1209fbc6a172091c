package loader

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
)

// keptCaps are the capabilities the loader keeps once the programs are
// loaded and the directories made: to start a new worker (SETUID, SETGID
// to change identity; SETPCAP to empty the worker's bounding set; KILL to
// stop a worker of another uid) and to attach to interfaces (BPF,
// NET_ADMIN). PERFMON (needed by the verifier at load), CHOWN (the audit
// directory) and every other capability are gone.
var keptCaps = []uintptr{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_KILL}

// objectsEnv carries the loaded objects' descriptors across the re-exec.
// It lacks the PCI_SEGMENT_ prefix so that it never reaches the worker.
const objectsEnv = "_PCI_SEGMENT_LOADER_OBJECTS"

// reduce re-executes the loader with the bounding set cut to keptCaps.
// Capabilities are per thread and a Go process has many threads, so the
// only way to drop them from the whole process is an exec from a thread
// whose bounding set is cut: the new image gets exactly that set. The
// loaded programs and maps survive as inherited descriptors, named in
// objectsEnv. It returns only on error.
func reduce(objs *bpf.DatapathObjects) error {
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
	// Read-only twins of the maps the worker must not write; opening one
	// by id takes CAP_SYS_ADMIN, which goes with this exec.
	for name := range bpf.WorkerReadOnly {
		m, err := objs.ByName(name)
		if err != nil {
			return err
		}
		fd, err := readOnlyFD(m)
		if err != nil {
			return err
		}
		if err := add(name+readOnlySuffix, fd); err != nil {
			return err
		}
	}
	if err := add(bpf.DatapathProgPciIngress, objs.PciIngress.FD()); err != nil {
		return err
	}
	if err := add(bpf.DatapathProgPciEgress, objs.PciEgress.FD()); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	env := append(os.Environ(), objectsEnv+"="+strings.Join(fds, ","))

	runtime.LockOSThread() // never unlocked: exec replaces the process
	last, err := lastCap()
	if err != nil {
		return err
	}
	keep := map[uintptr]bool{}
	for _, c := range keptCaps {
		keep[c] = true
	}
	for c := uintptr(0); c <= uintptr(last); c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from bounding set: %w", c, err)
			}
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return fmt.Errorf("re-execute loader with reduced capabilities: %w", unix.Exec(exe, os.Args, env))
}

// readOnlySuffix names a read-only descriptor passed by reduce.
const readOnlySuffix = "_ro"

// adopt takes the objects a reduce passed on, checking each before use, and
// the read-only descriptors by map name.
func adopt(spec string, sizes bpf.Sizes) (*bpf.DatapathObjects, map[string]*ebpf.Map, error) {
	os.Unsetenv(objectsEnv)
	objs := &bpf.DatapathObjects{}
	maps := map[string]*ebpf.Map{}
	readOnly := map[string]*ebpf.Map{}
	for _, kv := range strings.Split(spec, ",") {
		name, v, ok := strings.Cut(kv, "=")
		fd, err := strconv.Atoi(v)
		if !ok || err != nil || fd < 3 {
			return nil, nil, fmt.Errorf("%s: malformed entry %q", objectsEnv, kv)
		}
		unix.CloseOnExec(fd)
		switch name {
		case bpf.DatapathProgPciIngress, bpf.DatapathProgPciEgress:
			p, err := ebpf.NewProgramFromFD(fd)
			if err != nil {
				return nil, nil, fmt.Errorf("adopt program %s: %w", name, err)
			}
			if info, err := p.Info(); err != nil || info.Type != ebpf.SchedCLS || info.Name != name {
				return nil, nil, fmt.Errorf("adopt program %s: not the datapath's program", name)
			}
			if name == bpf.DatapathProgPciIngress {
				objs.PciIngress = p
			} else {
				objs.PciEgress = p
			}
		default:
			m, err := ebpf.NewMapFromFD(fd)
			if err != nil {
				return nil, nil, fmt.Errorf("adopt map %s: %w", name, err)
			}
			into, mapName := maps, name
			if base, ok := strings.CutSuffix(name, readOnlySuffix); ok && bpf.WorkerReadOnly[base] {
				into, mapName = readOnly, base
			}
			if err := bpf.Check(m, mapName, sizes); err != nil {
				return nil, nil, err
			}
			into[mapName] = m
		}
	}
	if err := objs.DatapathMaps.Set(maps); err != nil {
		return nil, nil, err
	}
	if objs.PciIngress == nil || objs.PciEgress == nil || len(readOnly) != len(bpf.WorkerReadOnly) {
		return nil, nil, fmt.Errorf("%s: programs or read-only maps missing", objectsEnv)
	}
	return objs, readOnly, nil
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
