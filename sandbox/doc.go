// Package sandbox holds the worker's seccomp policy and installs it.
//
// The worker is the unprivileged half of pci-segment: it runs as the
// pci-segment service account with no capabilities and NoNewPrivs, and holds
// the BPF map fds the loader passed it. The filter here limits what a
// compromised worker can ask of the kernel beyond that.
//
// # The policy is a table
//
// [WorkerRules] is one table of data, read top to bottom by an auditor: each
// entry names a syscall, the errno a refused call returns, an optional
// argument exemption, and why the call is refused. Everything not listed is
// allowed; this first version is a deny list, which PCI-DSS 2.2.5 asks for
// ("restrict system functions") and which keeps the Go runtime, the network
// stack and the logging paths working without enumerating them.
//
// bpf(2) is the one entry with an argument exemption: the worker may use the
// map commands in [AllowedBPFCommands] and nothing else. BPF_MAP_FREEZE
// matters most, because it needs no capability on an fd the worker holds and
// would make every later policy update fail. The kernel reads the command as
// an int, so the filter compares the low 32 bits only; a 64-bit equality
// would let BPF_MAP_FREEZE|1<<32 through. An allow-by-default filter cannot
// say "not one of these", so the complement of the allowed commands is cut
// into aligned power-of-two blocks, one masked comparison each, generated
// from the list.
//
// # Installing
//
// [Install] compiles the table with libseccomp, loads it on every thread
// (TSYNC), and then checks /proc/self/task/*/status: a thread left outside
// would be a way around the whole filter. Calls from another ABI (i386
// int 0x80, x32) kill the process, since the table is in x86_64 numbers.
// An entry libseccomp has no number for on this architecture is skipped and
// reported in [Report.Skipped] (none is with libseccomp 2.5.4 on x86_64).
// An entry for a syscall the running kernel lacks costs nothing: the kernel
// would have answered ENOSYS. An entry that ever refuses clone3 must use
// ENOSYS: glibc's pthread_create falls back to clone only on that.
//
// [DisabledByEnv] reads PCI_SEGMENT_DISABLE_SECCOMP, the switch for running
// the worker unconfined while diagnosing a refusal.
//
// The package needs cgo (libseccomp).
package sandbox
