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
// upgrade: the new loader comes with it).
func workerBinary(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open the worker binary (--worker-binary): %w", err)
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() || st.Mode()&0o001 == 0 {
		f.Close()
		return nil, fmt.Errorf("the worker binary %s is not a regular file every user may execute (%v)", path, err)
	}
	return f, nil
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
