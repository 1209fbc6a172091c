package bpf

import (
	"fmt"
	"strconv"
	"strings"

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
