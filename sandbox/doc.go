// Package sandbox holds the worker's seccomp policies and installs them.
//
// The worker is the unprivileged half of pci-segment: it runs as the
// pci-segment service account with no capabilities and NoNewPrivs, and holds
// the BPF map fds the loader passed it. It parses YAML and serves HTTP, so
// it is the half an attacker reaches; the filter here limits what a
// compromised worker can ask of the kernel beyond that.
//
// # Two policies, each one table
//
// A [Policy] is a table of [Rule] entries read top to bottom by an auditor:
// a syscall, an optional condition on its arguments, an [Action] (allow,
// fail with an errno, or kill), and why. What no entry matches gets the
// policy's default.
//
// [WorkerAllowlist] is the default (--seccomp=allowlist): about sixty
// syscalls, each with the reason the worker makes it, found by tracing the
// real worker through the end-to-end tests; everything else kills the whole
// process. Notable entries: bpf(2) only with the map commands in
// [AllowedBPFCommands]; clone only for threads (no fork, no CLONE_NEW*);
// clone3 answered ENOSYS, so that glibc falls back to clone; mmap and
// mprotect never with PROT_EXEC; socket only for TCP/UDP over IPv4 and
// IPv6 and rtnetlink, with multipath TCP answered EPROTONOSUPPORT;
// setsockopt only with the options Go sets; prctl only to name memory
// mappings; ioctl only as an isatty probe, answered ENOTTY. execve, the
// setuid family, ptrace, mount and the rest of the kernel are not listed.
//
// [WorkerDenylist] is the hardening guide's allow-by-default list
// (--seccomp=denylist): ptrace, module loading, mounts, namespaces,
// keyrings, identity changes and BPF commands other than the map ones fail
// with EPERM, and everything else runs.
//
// # Argument conditions
//
// A [Cond] compares one argument: [In] and [NotIn] on its low 32 bits,
// [AnyBit] and [Masked] on all 64. The kernel reads an int parameter, such
// as bpf(2)'s command, from the low half of the register, so a 64-bit
// equality would let BPF_MAP_FREEZE|1<<32 past a check for other commands
// and the kernel would still freeze the map. BPF_MAP_FREEZE matters most:
// it needs no capability on an fd the worker holds and would make every
// later policy update fail.
//
// libseccomp can only say "this action when the argument matches". [NotIn]
// therefore cuts the complement of its values into aligned power-of-two
// blocks, one masked comparison each. Entries for the same syscall must not
// overlap, which the policy check enforces: otherwise which action wins
// would depend on libseccomp's ordering rather than on the table.
//
// # Installing
//
// [Install] compiles a policy with libseccomp, loads it on every thread
// (TSYNC), and then checks /proc/self/task/*/status: a thread left outside
// would be a way around the whole filter. Calls from another ABI (i386
// int 0x80, and x32, whose numbers share the x86_64 audit architecture
// with bit 30 set) are killed outright, since the rules are in native
// numbers. An entry libseccomp has no number for is skipped and reported
// in [Report.Skipped] (none is with libseccomp 2.5.4 on x86_64).
//
// Landlock and the worker's own privilege self-check come before Install:
// neither landlock_* nor capget is in the allowlist.
//
// # Naming the call that killed the worker
//
// The allowlist's kill is SECCOMP_RET_TRAP, not SECCOMP_RET_KILL_PROCESS:
// the kernel then delivers SIGSYS with the syscall's number, and a small C
// handler Install sets up writes one line to stderr and ends the whole
// process with exit_group:
//
//	seccomp: worker killed: forbidden syscall setuid (105)
//
// with exit status [ViolationExitStatus]. The loader collects the worker's
// stderr; [ParseViolation] reads the line and [KilledByFilter] the exit
// status. A C handler, because the Go runtime's own turns such a SIGSYS
// into a crash dump without the call's name and exit status 2, and
// signal.Notify never sees it. The trapped call never runs either way; a
// compromised worker that replaced the handler could only survive its own
// refused call, not make it.
//
// [DisabledByEnv] reads PCI_SEGMENT_DISABLE_SECCOMP, the switch for running
// the worker unconfined while diagnosing a refusal.
//
// The package needs cgo (libseccomp, and the SIGSYS handler).
package sandbox
