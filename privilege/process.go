package privilege

import (
	"fmt"
	"os"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// LimitProcess cuts every thread of this process to keep: bounding,
// permitted and effective sets exactly keep, inheritable and ambient
// empty, and then reads every thread back. Capabilities are per thread and
// a Go process has many; libcap's psx makes each call on all of them at
// once, which Go's own syscall.AllThreadsSyscall refuses to do in a cgo
// binary. Threads started later copy the thread that starts them. Should
// the threads' results differ, psx kills the process (SIGKILL): a process
// half cut is never left running.
func LimitProcess(keep uint64) error {
	iab := cap.IABInit() // inheritable and ambient empty
	set := cap.NewSet()
	for c := cap.Value(0); c < cap.MaxBits(); c++ {
		if keep&(1<<c) == 0 {
			if err := iab.SetVector(cap.Bound, true, c); err != nil {
				return fmt.Errorf("drop %s from the bounding set: %w", c, err)
			}
		} else if err := set.SetFlag(cap.Permitted, true, c); err != nil {
			return fmt.Errorf("keep %s: %w", c, err)
		} else if err := set.SetFlag(cap.Effective, true, c); err != nil {
			return fmt.Errorf("keep %s: %w", c, err)
		}
	}
	// The bounding set first: cutting it needs CAP_SETPCAP, which keep
	// may not hold.
	if err := iab.SetProc(); err != nil {
		return fmt.Errorf("cut the bounding set of every thread: %w", err)
	}
	if err := set.SetProc(); err != nil {
		return fmt.Errorf("cut the permitted and effective sets of every thread: %w", err)
	}
	p, err := ReadProcess(os.Getpid())
	if err != nil {
		return err
	}
	for _, t := range p.Threads {
		if t.CapPrm != keep || t.CapEff != keep || t.CapBnd != keep || t.CapInh != 0 || t.CapAmb != 0 {
			return fmt.Errorf("after the drop thread %d holds permitted %v, effective %v, bounding %v, inheritable %v, ambient %v; want %v and nothing inheritable or ambient",
				t.TID, CapNames(t.CapPrm), CapNames(t.CapEff), CapNames(t.CapBnd), CapNames(t.CapInh), CapNames(t.CapAmb), CapNames(keep))
		}
	}
	return nil
}
