package loader

import (
	"fmt"
	"os"
	"strconv"

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
// directory) and every other capability are gone, from every thread
// (privilege.LimitProcess).
var keptCaps = []privilege.Cap{privilege.CapBPF, privilege.CapNetAdmin, privilege.CapSetuid,
	privilege.CapSetgid, privilege.CapSetpcap, privilege.CapKill}

// workerBinary opens the binary every worker runs from, so that each runs
// the file found at start, whatever has replaced the path since (a package
// upgrade: the new loader comes with it). The file must be root's and
// writable by root alone: whoever can write it writes the code of the next
// worker, which gets the maps. The descriptor is moved above the ones a
// worker is given (3, the channel), since the exec goes through
// /proc/self/fd after they are in place.
func workerBinary(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the worker binary (--worker-binary): %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("inspect the worker binary %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&0o001 == 0 || st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		if real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil {
			path = real // what pci-segment enforce passed as a descriptor
		}
		return nil, fmt.Errorf("the worker binary %s (uid %d, mode %#o) must be a regular file owned by root, writable by root alone, executable by all, neither setuid nor setgid: chown root: and chmod 0755 it", path, st.Uid, st.Mode&0o7777)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 10)
	if err != nil {
		return nil, fmt.Errorf("hold the worker binary: %w", err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// closeInherited closes every descriptor this process inherited beyond
// stdio, except keep. Those are the ones without close-on-exec: the exec
// that started this process closed any that had it, and Go opens
// everything with it.
func closeInherited(keep *os.File) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list inherited descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 || keep != nil && uintptr(fd) == keep.Fd() {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return nil
}

// readOnlyMaps opens read-only descriptors of the maps in
// bpf.WorkerReadOnly, the evidence the worker reports but must never reset.
func readOnlyMaps(objs *bpf.DatapathObjects, bpffs string) (map[string]*ebpf.Map, error) {
	ro := map[string]*ebpf.Map{}
	for name := range bpf.WorkerReadOnly {
		m, err := objs.ByName(name)
		if err == nil {
			ro[name], err = pins.ReadOnly(m, bpffs)
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
