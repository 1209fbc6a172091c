package bpf

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MinKernel is the oldest kernel with tcx.
var MinKernel = [2]int{6, 6}

// CheckKernel refuses kernels without tcx, naming both versions.
func CheckKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("read kernel version: %w", err)
	}
	return checkRelease(unix.ByteSliceToString(u.Release[:]))
}

func checkRelease(release string) error {
	major, minor, err := parseRelease(release)
	if err != nil {
		return err
	}
	if major < MinKernel[0] || (major == MinKernel[0] && minor < MinKernel[1]) {
		return fmt.Errorf("kernel %s is too old: pci-segment needs Linux %d.%d or newer for tcx attachment", release, MinKernel[0], MinKernel[1])
	}
	return nil
}

func parseRelease(r string) (int, int, error) {
	parts := strings.SplitN(r, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("parse kernel release %q", r)
	}
	major, err1 := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	if i := strings.IndexFunc(parts[1], func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		minorDigits = parts[1][:i]
	}
	minor, err2 := strconv.Atoi(minorDigits)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse kernel release %q", r)
	}
	return major, minor, nil
}

// DatapathTime is the wall-clock time of a timestamp the datapath stored
// (conntrack's last_seen_ns, a policy's last_ns): its clock is
// CLOCK_MONOTONIC_COARSE. ok is false for a time ahead of that clock now,
// which only a timestamp of another clock can be (an earlier build's, on
// adopted pins).
func DatapathTime(ns uint64) (t time.Time, ok bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return time.Time{}, false
	}
	now := uint64(ts.Nano())
	if ns > now {
		return time.Time{}, false
	}
	return time.Now().Add(-time.Duration(now - ns)), true
}

// SumPolicyHit adds up one policy's per-CPU match counter: the packets,
// and when the last of them passed (ok false for never, or for a time
// DatapathTime cannot convert).
func SumPolicyHit(per []DatapathPolicyHit) (packets uint64, last time.Time, ok bool) {
	var ns uint64
	for _, h := range per {
		packets += h.Packets
		ns = max(ns, h.LastNs)
	}
	if ns == 0 {
		return packets, time.Time{}, false
	}
	last, ok = DatapathTime(ns)
	return packets, last, ok
}
