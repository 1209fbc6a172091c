package sandbox

import (
	"slices"

	"golang.org/x/sys/unix"
)

// Rule is one entry of a seccomp policy: calls to Syscall return Errno
// instead of running, except where Unless says otherwise.
type Rule struct {
	Syscall string
	// Unless, when set, exempts calls whose argument matches it; every other
	// call to Syscall is refused.
	Unless *ArgIn
	// When, when set, refuses only calls whose argument matches it.
	When *ArgIn
	// WhenAnyBit, when set, refuses only calls whose argument has one of
	// these bits set.
	WhenAnyBit *ArgBits
	// Errno is what the refused call returns. EPERM for a refusal; ENOSYS
	// where the caller has a fallback it only takes on ENOSYS (glibc's
	// pthread_create retries clone3 as clone only then).
	Errno unix.Errno
	// Why says what the call would let a compromised worker do.
	Why string
}

// ArgIn matches a call whose argument Arg (0-based), truncated to its low
// 32 bits, is one of Values. The truncation is what the kernel does to an
// int parameter, so the upper half of the register never decides.
type ArgIn struct {
	Arg    uint
	Values []uint32
}

// ArgBits matches a call whose argument Arg has any bit of Mask set.
type ArgBits struct {
	Arg  uint
	Mask uint64
}

// BPFCommand is a bpf(2) command the worker may issue.
type BPFCommand struct {
	Name string
	Cmd  uint32
	Why  string
}

// allowedBPFCommands are all the bpf(2) commands the worker needs: it
// receives map fds from the loader and reads, writes and iterates them.
var allowedBPFCommands = []BPFCommand{
	{"BPF_MAP_LOOKUP_ELEM", unix.BPF_MAP_LOOKUP_ELEM, "read a policy entry or a counter"},
	{"BPF_MAP_UPDATE_ELEM", unix.BPF_MAP_UPDATE_ELEM, "apply a policy change"},
	{"BPF_MAP_DELETE_ELEM", unix.BPF_MAP_DELETE_ELEM, "remove a policy entry"},
	{"BPF_MAP_GET_NEXT_KEY", unix.BPF_MAP_GET_NEXT_KEY, "iterate a map to list or reconcile it"},
	{"BPF_OBJ_GET_INFO_BY_FD", unix.BPF_OBJ_GET_INFO_BY_FD, "learn a received fd's map type and sizes (ebpf.NewMapFromFD)"},
	{"BPF_MAP_LOOKUP_BATCH", unix.BPF_MAP_LOOKUP_BATCH, "read many entries in one call"},
	{"BPF_MAP_LOOKUP_AND_DELETE_BATCH", unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH, "drain many entries in one call"},
	{"BPF_MAP_UPDATE_BATCH", unix.BPF_MAP_UPDATE_BATCH, "load a whole policy in one call"},
	{"BPF_MAP_DELETE_BATCH", unix.BPF_MAP_DELETE_BATCH, "remove many entries in one call"},
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

// workerRules is the worker's policy. Everything not listed is allowed.
var workerRules = []Rule{
	// Other processes' memory.
	{Syscall: "ptrace", Errno: unix.EPERM, Why: "read and write another process's memory and registers"},
	{Syscall: "process_vm_readv", Errno: unix.EPERM, Why: "read another process's memory without attaching"},
	{Syscall: "process_vm_writev", Errno: unix.EPERM, Why: "write another process's memory without attaching"},
	{Syscall: "userfaultfd", Errno: unix.EPERM, Why: "stall kernel copies at will, the usual way to win a kernel race"},
	{Syscall: "perf_event_open", Errno: unix.EPERM, Why: "kernel profiling, a large and often exploited interface"},

	// The kernel itself.
	{Syscall: "init_module", Errno: unix.EPERM, Why: "load kernel code"},
	{Syscall: "finit_module", Errno: unix.EPERM, Why: "load kernel code from a file"},
	{Syscall: "delete_module", Errno: unix.EPERM, Why: "unload kernel code"},
	{Syscall: "kexec_load", Errno: unix.EPERM, Why: "replace the running kernel"},
	{Syscall: "kexec_file_load", Errno: unix.EPERM, Why: "replace the running kernel from a file"},
	{Syscall: "reboot", Errno: unix.EPERM, Why: "stop enforcement by rebooting or halting the host"},
	{Syscall: "swapon", Errno: unix.EPERM, Why: "page memory, keys included, to a device of the caller's choice"},
	{Syscall: "swapoff", Errno: unix.EPERM, Why: "change the host's swap"},
	{Syscall: "acct", Errno: unix.EPERM, Why: "switch process accounting, a host audit record"},
	{Syscall: "iopl", Errno: unix.EPERM, Why: "raw I/O port access"},
	{Syscall: "ioperm", Errno: unix.EPERM, Why: "raw I/O port access"},
	{Syscall: "quotactl", Errno: unix.EPERM, Why: "change disk quotas"},
	{Syscall: "quotactl_fd", Errno: unix.EPERM, Why: "change disk quotas through an fd"},
	{Syscall: "lookup_dcookie", Errno: unix.EPERM, Why: "obsolete profiling interface that resolves kernel dentry cookies"},
	{Syscall: "personality", Errno: unix.EPERM, Why: "turn off address randomisation for later execs; Go never calls it"},

	// Keyrings: not namespaced, shared with the host.
	{Syscall: "keyctl", Errno: unix.EPERM, Why: "read or change kernel keyrings"},
	{Syscall: "add_key", Errno: unix.EPERM, Why: "add to kernel keyrings"},
	{Syscall: "request_key", Errno: unix.EPERM, Why: "ask kernel keyrings for a key, possibly running an upcall"},

	// Mounts and namespaces: a new user namespace brings a full capability
	// set inside it, and the mount tree decides what every path means.
	{Syscall: "mount", Errno: unix.EPERM, Why: "change the mount tree"},
	{Syscall: "umount2", Errno: unix.EPERM, Why: "change the mount tree"},
	{Syscall: "pivot_root", Errno: unix.EPERM, Why: "change the root mount"},
	{Syscall: "chroot", Errno: unix.EPERM, Why: "change the root directory"},
	{Syscall: "move_mount", Errno: unix.EPERM, Why: "change the mount tree (new mount API)"},
	{Syscall: "open_tree", Errno: unix.EPERM, Why: "clone a mount (new mount API)"},
	{Syscall: "fsopen", Errno: unix.EPERM, Why: "create a filesystem context (new mount API)"},
	{Syscall: "fsconfig", Errno: unix.EPERM, Why: "configure a filesystem context (new mount API)"},
	{Syscall: "fsmount", Errno: unix.EPERM, Why: "create a mount (new mount API)"},
	{Syscall: "fspick", Errno: unix.EPERM, Why: "reconfigure a mounted filesystem (new mount API)"},
	{Syscall: "mount_setattr", Errno: unix.EPERM, Why: "change mount flags (new mount API)"},
	{Syscall: "setns", Errno: unix.EPERM, Why: "enter another namespace"},
	{Syscall: "unshare", Errno: unix.EPERM, Why: "create namespaces, a user namespace among them"},
	{Syscall: "clone", WhenAnyBit: &ArgBits{Arg: 0, Mask: namespaceFlags}, Errno: unix.EPERM,
		Why: "create namespaces while forking: a new user namespace holds every capability over itself and opens kernel code (nf_tables and more) to the worker"},
	// clone3 passes its flags in memory, which seccomp cannot read: refuse
	// it as unknown, and Go and glibc fall back to clone, checked above.
	{Syscall: "clone3", Errno: unix.ENOSYS, Why: "its namespace flags are out of seccomp's sight; clone is the checked fallback"},
	{Syscall: "io_uring_setup", Errno: unix.EPERM, Why: "io_uring issues system calls that seccomp never sees"},
	{Syscall: "ioctl", When: &ArgIn{Arg: 1, Values: []uint32{unix.TIOCSTI, unix.TIOCLINUX}}, Errno: unix.EPERM,
		Why: "push keystrokes into a terminal the loader's operator may be typing in"},
	{Syscall: "name_to_handle_at", Errno: unix.EPERM, Why: "turn a path into a file handle"},
	{Syscall: "open_by_handle_at", Errno: unix.EPERM, Why: "open a file by handle, around path permission checks"},

	// Identity: the loader set it once; the worker never changes it.
	{Syscall: "setuid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setgid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setreuid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setregid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setresuid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setresgid", Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setfsuid", Errno: unix.EPERM, Why: "change the identity used for file access"},
	{Syscall: "setfsgid", Errno: unix.EPERM, Why: "change the identity used for file access"},
	{Syscall: "setgroups", Errno: unix.EPERM, Why: "change supplementary groups"},
	{Syscall: "capset", Errno: unix.EPERM, Why: "change capabilities"},

	// BPF: the worker holds map fds and nothing else.
	{
		Syscall: "bpf",
		Unless:  &ArgIn{Arg: 0, Values: bpfCommandNumbers(allowedBPFCommands)},
		Errno:   unix.EPERM,
		Why: "every other command creates, opens, pins, loads, attaches or freezes BPF objects; " +
			"BPF_MAP_FREEZE needs no capability on a held fd and would block every later policy update",
	},
}

func bpfCommandNumbers(cmds []BPFCommand) []uint32 {
	n := make([]uint32, len(cmds))
	for i, c := range cmds {
		n[i] = c.Cmd
	}
	return n
}

// AllowedBPFCommands returns the bpf(2) commands the worker's filter lets
// through; every other command answers EPERM.
func AllowedBPFCommands() []BPFCommand {
	return slices.Clone(allowedBPFCommands)
}

// WorkerRules returns the worker's policy, a copy the caller may change.
func WorkerRules() []Rule {
	rules := slices.Clone(workerRules)
	for i, r := range rules {
		if r.Unless != nil {
			rules[i].Unless = &ArgIn{Arg: r.Unless.Arg, Values: slices.Clone(r.Unless.Values)}
		}
	}
	return rules
}
