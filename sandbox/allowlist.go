package sandbox

import "golang.org/x/sys/unix"

// workerAllowlist is every call the worker makes once confined, found by
// tracing the real worker through the end-to-end tests (strace -f) and
// reading the runtime's sources for the paths a trace on one host misses.
// Any other call kills the whole process: execve, the setuid family,
// ptrace, mount, unshare, keyctl, io_uring, userfaultfd, perf_event_open
// and everything else the kernel has or will have.
//
// Landlock is applied before this filter, so its calls are not listed; the
// worker's capability and NoNewPrivs self-check also runs before it.
var workerAllowlist = []Rule{
	// The Go runtime and glibc: scheduling, memory, signals, threads.
	{Syscall: "futex", Action: Allow, Why: "goroutine parking and every lock in the runtime and glibc"},
	{Syscall: "nanosleep", Action: Allow, Why: "the runtime's usleep (sysmon, spinning Ms)"},
	{Syscall: "sched_yield", Action: Allow, Why: "the runtime's osyield"},
	{Syscall: "clock_gettime", Action: Allow,
		Why: "time.Now and timers where the vDSO falls back to the kernel (some clock sources)"},
	{Syscall: "restart_syscall", Action: Allow, Why: "the kernel resumes a sleep a signal interrupted"},
	{Syscall: "mmap", Args: []Cond{Masked(2, unix.PROT_EXEC, 0)}, Action: Allow,
		Why: "heap, stacks, and the event ring buffer's pages; never executable, so no code can be mapped in"},
	{Syscall: "mprotect", Args: []Cond{Masked(2, unix.PROT_EXEC, 0)}, Action: Allow,
		Why: "glibc's guard page below each thread stack; never to executable"},
	{Syscall: "munmap", Action: Allow, Why: "give back memory and thread stacks"},
	{Syscall: "madvise", Action: Allow, Why: "the scavenger and debug.FreeOSMemory return freed pages"},
	{Syscall: "brk", Action: Allow, Why: "glibc malloc, for libseccomp and cgo"},
	{Syscall: "rt_sigaction", Action: Allow,
		Why: "signal.Notify installs the handlers for SIGTERM and SIGINT"},
	{Syscall: "rt_sigprocmask", Action: Allow,
		Why: "every new thread and every signal handler sets its mask"},
	{Syscall: "rt_sigreturn", Action: Allow, Why: "return from every signal handler (preemption, SIGTERM)"},
	{Syscall: "sigaltstack", Action: Allow, Why: "every new thread gets a signal stack"},
	{Syscall: "tgkill", Action: Allow,
		Why: "asynchronous preemption of running goroutines (SIGURG to a thread)"},
	{Syscall: "kill", Action: Allow,
		Why: "the runtime's last step on a fatal signal re-raises it at the process; " +
			"other targets need the service account's uid, which only the worker runs as"},
	{Syscall: "getpid", Action: Allow, Why: "the runtime's signal paths, the audit log's who field"},
	{Syscall: "gettid", Action: Allow, Why: "the runtime's signal paths and thread start"},
	{Syscall: "clone", Args: []Cond{Masked(0, unix.CLONE_THREAD|namespaceFlags, unix.CLONE_THREAD)}, Action: Allow,
		Why: "new threads only: no namespaces (a user namespace holds every capability " +
			"over itself and opens nf_tables and more), and no fork (a child would keep " +
			"the map fds without the parent-death signal, outliving a worker the loader killed)"},
	// clone3 passes its flags in memory, which seccomp cannot read.
	{Syscall: "clone3", Action: Errno, Errno: unix.ENOSYS,
		Why: "its flags are out of seccomp's sight; on ENOSYS, and only on that, " +
			"glibc's pthread_create falls back to the checked clone"},
	{Syscall: "set_robust_list", Action: Allow, Why: "glibc registers each new thread's robust futex list"},
	{Syscall: "rseq", Action: Allow, Why: "glibc registers each new thread for restartable sequences"},
	{Syscall: "exit", Action: Allow,
		Why: "a thread ends (a goroutine that exits locked to its thread, a cgo thread)"},
	{Syscall: "exit_group", Action: Allow, Why: "the worker ends, also from the SIGSYS reporter"},
	{Syscall: "sched_getaffinity", Action: Allow,
		Why: "the runtime re-reads the CPUs it may use to adjust GOMAXPROCS"},
	{Syscall: "getrandom", Action: Allow,
		Why: "crypto/rand and map seeds on kernels before 6.11, which lack the vDSO getrandom"},

	// The netpoller: every socket, the IPC channel and the ring buffer.
	{Syscall: "epoll_create1", Action: Allow, Why: "the netpoller, and the ring buffer reader's own poller"},
	{Syscall: "epoll_ctl", Action: Allow, Why: "register and remove fds with a poller"},
	{Syscall: "epoll_pwait", Action: Allow, Why: "wait for fds and timers"},
	{Syscall: "eventfd2", Action: Allow,
		Why: "wake a poller (the runtime's netpollBreak, closing the ring buffer reader)"},

	// Files: policies, the audit log, /proc and /sys. Landlock decides
	// which paths.
	{Syscall: "openat", Action: Allow,
		Why: "policy files, the audit log, /proc/self and /sys/devices/system/cpu"},
	{Syscall: "close", Action: Allow, Why: "every fd"},
	{Syscall: "read", Action: Allow, Why: "files, sockets, the event ring buffer's wakeups"},
	{Syscall: "write", Action: Allow, Why: "the audit log, logs to stderr, HTTP responses, the syslog copy of audit seals"},
	{Syscall: "fsync", Action: Allow, Why: "the audit log and its chain state reach the disk (batched)"},
	{Syscall: "fdatasync", Action: Allow, Why: "the audit log reaches the disk"},
	{Syscall: "renameat", Action: Allow, Why: "audit rotation and the chain state's atomic replacement (Landlock keeps it to the audit and state directories)"},
	{Syscall: "renameat2", Action: Allow, Why: "os.Rename on architectures without renameat"},
	{Syscall: "ftruncate", Action: Allow, Why: "a failed audit write is cut back to the last whole record (Landlock keeps it to the audit and state directories)"},
	{Syscall: "unlinkat", Action: Allow, Why: "audit retention removes files past a year, and a rotated file once compressed"},
	{Syscall: "pread64", Action: Allow, Why: "the runtime reads the cgroup CPU limit for GOMAXPROCS"},
	{Syscall: "fstat", Action: Allow, Why: "os.File.Stat and ReadDir"},
	{Syscall: "newfstatat", Action: Allow, Why: "os.Stat of policy files and directories"},
	{Syscall: "statfs", Action: Allow, Why: "the metrics' process collector checks that /proc is procfs"},
	{Syscall: "getdents64", Action: Allow, Why: "list policy directories and /proc/self/task"},
	{Syscall: "fcntl", Action: Allow,
		Why: "close-on-exec and non-blocking flags on every fd Go opens or receives"},
	{Syscall: "uname", Action: Allow, Why: "cilium/ebpf and net read the kernel version"},
	{Syscall: "getuid", Action: Allow, Why: "the audit log's who field"},
	{Syscall: "getgid", Action: Allow, Why: "the audit log's privilege record"},
	{Syscall: "inotify_init1", Action: Allow, Why: "policy reload watches the policy directories"},
	{Syscall: "inotify_add_watch", Action: Allow, Why: "policy reload watches the policy directories"},
	{Syscall: "inotify_rm_watch", Action: Allow, Why: "policy reload stops watching a directory"},
	// Terminal probes (isatty) get "not a terminal"; every other ioctl,
	// TIOCSTI and TIOCLINUX among them, kills.
	{Syscall: "ioctl", Args: []Cond{In(1, unix.TCGETS)}, Action: Errno, Errno: unix.ENOTTY,
		Why: "a logging library's isatty probe on stderr must not kill the worker; it never reaches a terminal"},
	{Syscall: "prctl", Args: []Cond{In(0, unix.PR_SET_VMA), In(1, unix.PR_SET_VMA_ANON_NAME)}, Action: Allow,
		Why: "the runtime names its anonymous mappings (Go 1.25 and later, on kernels with CONFIG_ANON_VMA_NAME)"},

	// Sockets: the metrics listener, netlink for interface names, and the
	// channel to the loader (inherited, so never created here).
	{Syscall: "socket", Args: []Cond{In(0, unix.AF_INET, unix.AF_INET6), In(2, 0, unix.IPPROTO_TCP)}, Action: Allow,
		Why: "the metrics listener, and the runtime's probes for IPv4 and IPv6 support"},
	{Syscall: "socket", Args: []Cond{In(0, unix.AF_INET, unix.AF_INET6), In(2, unix.IPPROTO_MPTCP)},
		Action: Errno, Errno: unix.EPROTONOSUPPORT,
		Why: "Go listens with multipath TCP where it can, young kernel code the worker " +
			"gains nothing from; on EPROTONOSUPPORT Go uses TCP"},
	{Syscall: "socket", Args: []Cond{In(0, unix.AF_NETLINK), In(2, unix.NETLINK_ROUTE)}, Action: Allow,
		Why: "net.InterfaceByIndex asks rtnetlink for the interface named in an audit record"},
	{Syscall: "bind", Action: Allow, Why: "the metrics listener, netlink, the runtime's IPv6 probe"},
	{Syscall: "listen", Action: Allow, Why: "the metrics listener"},
	{Syscall: "accept4", Action: Allow, Why: "a metrics scrape"},
	{Syscall: "connect", Action: Allow, Why: "Go's resolver when --metrics-addr names a host"},
	{Syscall: "shutdown", Action: Allow,
		Why: "net/http half-closes a connection whose request headers are too large (431): " +
			"a client must not be able to kill the worker"},
	{Syscall: "getsockname", Action: Allow, Why: "the metrics listener's bound address, netlink"},
	{Syscall: "getpeername", Action: Allow,
		Why: "net.Dial reads the address it connected to (the resolver's sockets)"},
	{Syscall: "getsockopt", Action: Allow,
		Why: "the channel's type check (SO_TYPE, SO_DOMAIN), a connection's SO_ERROR"},
	{Syscall: "setsockopt", Action: Allow,
		Args: []Cond{In(1, unix.SOL_SOCKET), In(2, unix.SO_REUSEADDR, unix.SO_KEEPALIVE, unix.SO_BROADCAST)},
		Why:  "Go sets these on listeners, keep-alive connections and UDP sockets"},
	{Syscall: "setsockopt", Action: Allow,
		Args: []Cond{In(1, unix.IPPROTO_TCP), In(2, unix.TCP_NODELAY, unix.TCP_KEEPIDLE, unix.TCP_KEEPINTVL, unix.TCP_KEEPCNT)},
		Why:  "Go sets these on every TCP connection; any other TCP option kills, TCP_ULP (kernel TLS) among them"},
	{Syscall: "setsockopt", Args: []Cond{In(1, unix.IPPROTO_IPV6), In(2, unix.IPV6_V6ONLY)}, Action: Allow,
		Why: "Go sets it on every IPv6 socket"},
	{Syscall: "recvfrom", Action: Allow, Why: "netlink replies"},
	{Syscall: "sendto", Action: Allow, Why: "netlink requests"},
	{Syscall: "recvmsg", Action: Allow, Why: "messages and map fds (SCM_RIGHTS) from the loader"},
	{Syscall: "sendmsg", Action: Allow, Why: "messages to the loader"},

	// BPF: the map commands on fds the loader passed, compared on the low
	// 32 bits of the command as the kernel reads it.
	{Syscall: "bpf", Args: []Cond{In(0, bpfCommandNumbers(allowedBPFCommands)...)}, Action: Allow,
		Why: "read, write and iterate the maps the loader passed (AllowedBPFCommands); any other command kills: " + bpfWhy},
}
