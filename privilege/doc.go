// Package privilege reads what a process is allowed to do: its ids, groups,
// capability sets, NoNewPrivs and seccomp state; and sets it: it cuts a
// process to the capabilities it keeps ([LimitProcess]), starts a child with
// nothing ([StartBare]) from a binary only root can change
// ([OpenExecutable]), and closes what a process inherited
// ([CloseInherited]).
//
// The loader uses it to check the worker it started and the worker uses it
// to check itself. All of this state is per thread in the kernel, so
// [ReadThreads] reads every /proc/PID/task/TID/status and [Process.Uniform]
// reports a thread that is less confined than the leader; a single such
// thread is enough to escape.
//
// [ParseStatus] is strict: the fields it uses must have exactly the kernel's
// format and appear once, and any deviation is a [*ParseError] naming the
// file and line. A misread capability mask would report a process as
// confined when it is not.
//
// [CurrentCaps] and [MissingCaps] ask the kernel directly (capget, and prctl
// for the bounding and ambient sets) about the calling OS thread, and
// [CapNames] turns a mask into libcap's names (cap_bpf, cap_net_admin, ...)
// for messages an operator can compare with getpcaps or systemd's output.
package privilege
