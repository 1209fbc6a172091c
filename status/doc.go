// Package status gathers and renders what `pci-segment status` shows: the
// running privilege split of one pci-segment instance, in one view, for an
// operator or an auditor. It is what the hardening guide's verification
// section checks by hand (`ps -o pid,user,group,cmd -C pci-segment`,
// /proc/PID/status, `ls` of the pin directory).
//
// # Which instance
//
// An instance is named by its pin directory (enforce's --pin-dir). Its
// loader is the process called pci-segment whose command line is
// `enforce` with that pin directory; its worker is the loader's child
// called pci-segment running `worker`. The state directory (--state-dir)
// is where the worker publishes what Landlock it applied (package
// confine).
//
// # What it shows
//
// For the loader and the worker: pid, user, group and supplementary groups
// (ids and names), the four uids and gids, the five capability sets by
// name, NoNewPrivs, the seccomp mode and filter count, whether every thread
// agrees with the leader on all of these (they are per thread in the
// kernel), the MAC label (/proc/PID/attr/current), and the BPF maps,
// programs and links the process holds (from /proc/PID/fd and
// /proc/PID/fdinfo, with names looked up by id). For the worker also the
// Landlock report it wrote. Then the development overrides in effect
// (PCI_SEGMENT_* in the loader's environment, --allow-root on its command
// line), the pins, each pinned tcx link with its interface, direction and
// program and any program attached ahead of ours on that hook, the policy
// generation and set hash in force (the pinned info map), and the
// datapath's counters.
//
// An interface index only means something inside a network namespace, so
// interface names and the programs attached to each hook are looked up in
// the loader's namespace (/proc/LOADER/ns/net, entered with setns on a
// locked thread that is discarded if it cannot return).
//
// # Without root
//
// Most of /proc/PID/status and cmdline is readable by anyone; file
// descriptors, environment, pins and namespaces are not. Gather never fails
// for lack of privilege: whatever it could not read goes into
// [Status.Unavailable] with the reason, and the rest is shown.
//
// # Findings
//
// [Status.Findings] lists what an auditor should look at: no loader or no
// worker for pins that enforce, a capability or uid 0 left in the worker,
// NoNewPrivs off or no seccomp filter in the worker, threads that differ,
// overrides in effect, a stale or missing Landlock report, a program
// attached ahead of ours, an interface with only one direction attached.
package status
