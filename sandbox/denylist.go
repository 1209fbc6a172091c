package sandbox

import "golang.org/x/sys/unix"

// workerDenylist is the hardening guide's policy: everything not listed is
// allowed, and the calls listed fail without running. An entry for a
// syscall libseccomp does not know is skipped; one the running kernel lacks
// costs nothing.
var workerDenylist = []Rule{
	// Other processes' memory.
	{Syscall: "ptrace", Action: Errno, Errno: unix.EPERM,
		Why: "read and write another process's memory and registers"},
	{Syscall: "process_vm_readv", Action: Errno, Errno: unix.EPERM,
		Why: "read another process's memory without attaching"},
	{Syscall: "process_vm_writev", Action: Errno, Errno: unix.EPERM,
		Why: "write another process's memory without attaching"},
	{Syscall: "userfaultfd", Action: Errno, Errno: unix.EPERM,
		Why: "stall kernel copies at will, the usual way to win a kernel race"},
	{Syscall: "perf_event_open", Action: Errno, Errno: unix.EPERM,
		Why: "kernel profiling, a large and often exploited interface"},

	// The kernel itself.
	{Syscall: "init_module", Action: Errno, Errno: unix.EPERM, Why: "load kernel code"},
	{Syscall: "finit_module", Action: Errno, Errno: unix.EPERM, Why: "load kernel code from a file"},
	{Syscall: "delete_module", Action: Errno, Errno: unix.EPERM, Why: "unload kernel code"},
	{Syscall: "kexec_load", Action: Errno, Errno: unix.EPERM, Why: "replace the running kernel"},
	{Syscall: "kexec_file_load", Action: Errno, Errno: unix.EPERM,
		Why: "replace the running kernel from a file"},
	{Syscall: "reboot", Action: Errno, Errno: unix.EPERM,
		Why: "stop enforcement by rebooting or halting the host"},
	{Syscall: "swapon", Action: Errno, Errno: unix.EPERM,
		Why: "page memory, keys included, to a device of the caller's choice"},
	{Syscall: "swapoff", Action: Errno, Errno: unix.EPERM, Why: "change the host's swap"},
	{Syscall: "acct", Action: Errno, Errno: unix.EPERM,
		Why: "switch process accounting, a host audit record"},
	{Syscall: "iopl", Action: Errno, Errno: unix.EPERM, Why: "raw I/O port access"},
	{Syscall: "ioperm", Action: Errno, Errno: unix.EPERM, Why: "raw I/O port access"},
	{Syscall: "quotactl", Action: Errno, Errno: unix.EPERM, Why: "change disk quotas"},
	{Syscall: "quotactl_fd", Action: Errno, Errno: unix.EPERM, Why: "change disk quotas through an fd"},
	{Syscall: "lookup_dcookie", Action: Errno, Errno: unix.EPERM,
		Why: "obsolete profiling interface that resolves kernel dentry cookies"},
	{Syscall: "personality", Action: Errno, Errno: unix.EPERM,
		Why: "turn off address randomisation for later execs; Go never calls it"},

	// Keyrings: not namespaced, shared with the host.
	{Syscall: "keyctl", Action: Errno, Errno: unix.EPERM, Why: "read or change kernel keyrings"},
	{Syscall: "add_key", Action: Errno, Errno: unix.EPERM, Why: "add to kernel keyrings"},
	{Syscall: "request_key", Action: Errno, Errno: unix.EPERM,
		Why: "ask kernel keyrings for a key, possibly running an upcall"},

	// Mounts and namespaces: a new user namespace brings a full capability
	// set inside it, and the mount tree decides what every path means.
	{Syscall: "mount", Action: Errno, Errno: unix.EPERM, Why: "change the mount tree"},
	{Syscall: "umount2", Action: Errno, Errno: unix.EPERM, Why: "change the mount tree"},
	{Syscall: "pivot_root", Action: Errno, Errno: unix.EPERM, Why: "change the root mount"},
	{Syscall: "chroot", Action: Errno, Errno: unix.EPERM, Why: "change the root directory"},
	{Syscall: "move_mount", Action: Errno, Errno: unix.EPERM, Why: "change the mount tree (new mount API)"},
	{Syscall: "open_tree", Action: Errno, Errno: unix.EPERM, Why: "clone a mount (new mount API)"},
	{Syscall: "fsopen", Action: Errno, Errno: unix.EPERM, Why: "create a filesystem context (new mount API)"},
	{Syscall: "fsconfig", Action: Errno, Errno: unix.EPERM,
		Why: "configure a filesystem context (new mount API)"},
	{Syscall: "fsmount", Action: Errno, Errno: unix.EPERM, Why: "create a mount (new mount API)"},
	{Syscall: "fspick", Action: Errno, Errno: unix.EPERM,
		Why: "reconfigure a mounted filesystem (new mount API)"},
	{Syscall: "mount_setattr", Action: Errno, Errno: unix.EPERM, Why: "change mount flags (new mount API)"},
	{Syscall: "setns", Action: Errno, Errno: unix.EPERM, Why: "enter another namespace"},
	{Syscall: "unshare", Action: Errno, Errno: unix.EPERM,
		Why: "create namespaces, a user namespace among them"},
	{Syscall: "clone", Args: []Cond{AnyBit(0, namespaceFlags)}, Action: Errno, Errno: unix.EPERM,
		Why: "create namespaces while forking: a new user namespace holds every capability " +
			"over itself and opens kernel code (nf_tables and more) to the worker"},
	// clone3 passes its flags in memory, which seccomp cannot read: refuse
	// it as unknown, and Go and glibc fall back to clone, checked above.
	{Syscall: "clone3", Action: Errno, Errno: unix.ENOSYS,
		Why: "its namespace flags are out of seccomp's sight; clone is the checked fallback"},
	{Syscall: "io_uring_setup", Action: Errno, Errno: unix.EPERM,
		Why: "io_uring issues system calls that seccomp never sees"},
	{Syscall: "ioctl", Args: []Cond{In(1, unix.TIOCSTI, unix.TIOCLINUX)}, Action: Errno, Errno: unix.EPERM,
		Why: "push keystrokes into a terminal the loader's operator may be typing in"},
	{Syscall: "name_to_handle_at", Action: Errno, Errno: unix.EPERM, Why: "turn a path into a file handle"},
	{Syscall: "open_by_handle_at", Action: Errno, Errno: unix.EPERM,
		Why: "open a file by handle, around path permission checks"},

	// Identity: the loader set it once; the worker never changes it.
	{Syscall: "setuid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setgid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setreuid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setregid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setresuid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setresgid", Action: Errno, Errno: unix.EPERM, Why: "change identity"},
	{Syscall: "setfsuid", Action: Errno, Errno: unix.EPERM, Why: "change the identity used for file access"},
	{Syscall: "setfsgid", Action: Errno, Errno: unix.EPERM, Why: "change the identity used for file access"},
	{Syscall: "setgroups", Action: Errno, Errno: unix.EPERM, Why: "change supplementary groups"},
	{Syscall: "capset", Action: Errno, Errno: unix.EPERM, Why: "change capabilities"},

	// BPF: the worker holds map fds and nothing else. An allow-by-default
	// filter cannot say "not one of these" directly: NotIn cuts the
	// complement of the allowed commands into aligned blocks, one masked
	// comparison on the low 32 bits each.
	{Syscall: "bpf", Args: []Cond{NotIn(0, bpfCommandNumbers(allowedBPFCommands)...)}, Action: Errno, Errno: unix.EPERM,
		Why: bpfWhy},
}
