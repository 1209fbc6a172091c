package privilege

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number, the bit index in a capability mask.
type Cap uint8

// The capabilities up to Linux 6.18, numbered as in linux/capability.h.
const (
	CapChown             Cap = 0
	CapDacOverride       Cap = 1
	CapDacReadSearch     Cap = 2
	CapFowner            Cap = 3
	CapFsetid            Cap = 4
	CapKill              Cap = 5
	CapSetgid            Cap = 6
	CapSetuid            Cap = 7
	CapSetpcap           Cap = 8
	CapLinuxImmutable    Cap = 9
	CapNetBindService    Cap = 10
	CapNetBroadcast      Cap = 11
	CapNetAdmin          Cap = 12
	CapNetRaw            Cap = 13
	CapIpcLock           Cap = 14
	CapIpcOwner          Cap = 15
	CapSysModule         Cap = 16
	CapSysRawio          Cap = 17
	CapSysChroot         Cap = 18
	CapSysPtrace         Cap = 19
	CapSysPacct          Cap = 20
	CapSysAdmin          Cap = 21
	CapSysBoot           Cap = 22
	CapSysNice           Cap = 23
	CapSysResource       Cap = 24
	CapSysTime           Cap = 25
	CapSysTtyConfig      Cap = 26
	CapMknod             Cap = 27
	CapLease             Cap = 28
	CapAuditWrite        Cap = 29
	CapAuditControl      Cap = 30
	CapSetfcap           Cap = 31
	CapMacOverride       Cap = 32
	CapMacAdmin          Cap = 33
	CapSyslog            Cap = 34
	CapWakeAlarm         Cap = 35
	CapBlockSuspend      Cap = 36
	CapAuditRead         Cap = 37
	CapPerfmon           Cap = 38
	CapBPF               Cap = 39
	CapCheckpointRestore Cap = 40

	// LastCap is the highest capability this package has a name for.
	LastCap = CapCheckpointRestore
)

// capNames is indexed by Cap; the spelling is libcap's.
var capNames = [...]string{
	CapChown:             "cap_chown",
	CapDacOverride:       "cap_dac_override",
	CapDacReadSearch:     "cap_dac_read_search",
	CapFowner:            "cap_fowner",
	CapFsetid:            "cap_fsetid",
	CapKill:              "cap_kill",
	CapSetgid:            "cap_setgid",
	CapSetuid:            "cap_setuid",
	CapSetpcap:           "cap_setpcap",
	CapLinuxImmutable:    "cap_linux_immutable",
	CapNetBindService:    "cap_net_bind_service",
	CapNetBroadcast:      "cap_net_broadcast",
	CapNetAdmin:          "cap_net_admin",
	CapNetRaw:            "cap_net_raw",
	CapIpcLock:           "cap_ipc_lock",
	CapIpcOwner:          "cap_ipc_owner",
	CapSysModule:         "cap_sys_module",
	CapSysRawio:          "cap_sys_rawio",
	CapSysChroot:         "cap_sys_chroot",
	CapSysPtrace:         "cap_sys_ptrace",
	CapSysPacct:          "cap_sys_pacct",
	CapSysAdmin:          "cap_sys_admin",
	CapSysBoot:           "cap_sys_boot",
	CapSysNice:           "cap_sys_nice",
	CapSysResource:       "cap_sys_resource",
	CapSysTime:           "cap_sys_time",
	CapSysTtyConfig:      "cap_sys_tty_config",
	CapMknod:             "cap_mknod",
	CapLease:             "cap_lease",
	CapAuditWrite:        "cap_audit_write",
	CapAuditControl:      "cap_audit_control",
	CapSetfcap:           "cap_setfcap",
	CapMacOverride:       "cap_mac_override",
	CapMacAdmin:          "cap_mac_admin",
	CapSyslog:            "cap_syslog",
	CapWakeAlarm:         "cap_wake_alarm",
	CapBlockSuspend:      "cap_block_suspend",
	CapAuditRead:         "cap_audit_read",
	CapPerfmon:           "cap_perfmon",
	CapBPF:               "cap_bpf",
	CapCheckpointRestore: "cap_checkpoint_restore",
}

// String returns the libcap name ("cap_bpf"), or the decimal number for a
// capability newer than [LastCap], as libcap does.
func (c Cap) String() string {
	if int(c) < len(capNames) {
		return capNames[c]
	}
	return strconv.Itoa(int(c))
}

// ParseCap returns the capability named name: a libcap name in any case
// ("cap_bpf", "CAP_BPF") or a decimal number below 64.
func ParseCap(name string) (Cap, error) {
	lower := strings.ToLower(name)
	for c, n := range capNames {
		if n == lower {
			return Cap(c), nil
		}
	}
	if n, err := strconv.ParseUint(name, 10, 6); err == nil {
		return Cap(n), nil
	}
	return 0, fmt.Errorf("unknown capability %q", name)
}

// CapMask returns the mask with the bits of caps set. A Cap above 63 has no
// bit and is left out.
func CapMask(caps ...Cap) uint64 {
	var m uint64
	for _, c := range caps {
		if c < 64 {
			m |= 1 << c
		}
	}
	return m
}

// CapNames returns the names of the capabilities set in mask, lowest bit
// first; nil for an empty mask.
func CapNames(mask uint64) []string {
	var names []string
	for mask != 0 {
		c := Cap(bits.TrailingZeros64(mask))
		names = append(names, c.String())
		mask &^= 1 << c
	}
	return names
}

// CapSets are the five capability sets of one thread, as masks.
type CapSets struct {
	Effective   uint64
	Permitted   uint64
	Inheritable uint64
	Bounding    uint64
	Ambient     uint64
}

// CurrentCaps returns the capability sets of the calling OS thread.
// Capabilities are per thread and goroutines move between threads: a caller
// that changes them must hold runtime.LockOSThread around the change and the
// check.
func CurrentCaps() (CapSets, error) {
	var s CapSets
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	// Version 3 fills two 32-bit halves; unix.Capget takes the first.
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return s, fmt.Errorf("capget: %w", err)
	}
	s.Effective = uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	s.Permitted = uint64(data[1].Permitted)<<32 | uint64(data[0].Permitted)
	s.Inheritable = uint64(data[1].Inheritable)<<32 | uint64(data[0].Inheritable)

	// The bounding and ambient sets have no capget interface; prctl answers
	// one capability at a time and EINVAL above the kernel's last one.
	for c := range uintptr(64) {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break
		}
		if err != nil {
			return s, fmt.Errorf("read bounding set bit %d: %w", c, err)
		}
		if in == 1 {
			s.Bounding |= 1 << c
		}
		in, err = unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, c, 0, 0)
		if err != nil {
			return s, fmt.Errorf("read ambient set bit %d: %w", c, err)
		}
		if in == 1 {
			s.Ambient |= 1 << c
		}
	}
	return s, nil
}

// MissingCaps returns the names of the capabilities in required that the
// calling OS thread does not have in its effective set, in the order given;
// nil when none is missing.
func MissingCaps(required []Cap) ([]string, error) {
	sets, err := CurrentCaps()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range required {
		if c > 63 {
			return nil, fmt.Errorf("capability %d out of range", c)
		}
		if sets.Effective&(1<<c) == 0 {
			missing = append(missing, c.String())
		}
	}
	return missing, nil
}
