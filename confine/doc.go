// Package confine puts the worker under Landlock: after it, the worker can
// read its policy directories and its own /proc entry, write its audit and
// state directories, bind the metrics port, and nothing else on the file
// system or over TCP.
//
// # What the worker may do
//
// [Plan] turns the worker's command line ([Paths]) into a table of grants,
// each with the reason it exists; [Worker] enforces that table on every
// thread of the process and returns a [Report] of what the kernel accepted.
//
//	policy locations   read_file, read_dir   the YAML policies; directories, not files
//	/proc/<own pid>    read_file, read_dir   its own status (privilege checks, metrics)
//	/proc/stat         read_file             boot time, for process_start_time_seconds
//	audit directory    read and write        the audit log
//	state directory    read and write        state, and this package's report
//	metrics port       bind (TCP)            the Prometheus endpoint
//
// A policy location is a directory because editors and configuration tools
// replace a file by writing a new one and renaming it over the old: a rule
// on the old file would not cover its replacement. For `-f FILE` the
// location is the file's directory, for `-f DIR` the directory, and for a
// glob the directory part before its first wildcard. A location reached
// through a symbolic link is granted both where the link is and where it
// points.
//
// Nothing may be executed, no device opened, no symbolic link, FIFO, socket
// or device node created, nothing renamed across directories, and no TCP
// connection made. A metrics address that names a host or a service rather
// than an IP address and a port number also gets the resolver's files
// (/etc/hosts, /etc/resolv.conf, /etc/nsswitch.conf, /etc/services ...):
// the production default, 127.0.0.1:9720, needs none.
//
// # Best effort by ABI
//
// The ruleset asks for Landlock ABI 7 (Linux 6.15), the newest this package
// was tested against. On an older kernel the kernel's own ABI level is used
// and the report says what it covers: file access from ABI 1, TCP bind and
// connect from ABI 4, signals and abstract UNIX sockets from ABI 6. Without
// Landlock (kernel or boot option) nothing is restricted and the report
// says so; it is not an error. Newer ABIs (9: pathname UNIX sockets, 10:
// UDP) need the worker tested under them before the ruleset asks for them.
//
// # Every thread, and when
//
// Landlock applies per thread, and Go runs goroutines on threads that
// already exist. Before ABI 8 (whose TSYNC flag does it in the kernel)
// go-landlock uses libcap's psx, which signals every thread of the process
// (signal 33, with tkill) to run landlock_restrict_self.
//
// The worker calls [Worker] and then [WriteReport] after its privilege
// self-check and before installing its seccomp filter: the allowlist has
// neither the landlock_* calls, tkill, nor the fchmod and rename the report
// needs. Nothing has been read from a policy file by then, and the map fds
// the loader sends later are not affected (Landlock checks opening a path,
// not receiving a descriptor).
//
// Some libraries read a file once, lazily, and would fail afterwards;
// [Worker] makes them read it first: the local time zone, the listen
// backlog (/proc/sys/net/core/somaxconn) and Go's IPv6 probe, and
// /sys/devices/system/cpu/possible, which cilium/ebpf reads when the
// worker opens the per-CPU counter map it receives. A trace of the worker
// under these rules (strace -f through start, policy applied and a metrics
// scrape) shows no other refused access.
//
// # What Landlock does not cover
//
// Landlock at ABI 7 restricts classic TCP only: UDP and SCTP sockets, and
// Multipath TCP sockets (socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)),
// may bind and connect anywhere. The worker's seccomp allowlist refuses
// MPTCP and every socket family and protocol it does not use; [Worker]
// also turns Go's default use of MPTCP for listeners off (GODEBUG
// multipathtcp=0), so that the metrics listener is a socket the TCP rule
// governs. Nor does Landlock restrict stat, chmod, chown, or descriptors
// opened before [Worker]. [Report.NotRestricted] lists these for the
// running ABI.
//
// A policy file that is a symbolic link to a file outside the policy
// locations cannot be read: link the directory instead, or name the target
// with -f.
//
// # The report
//
// [WriteReport] stores the report as worker.json (mode 0644) in the state
// directory, replacing the file by rename; [ReadReport] reads it back
// without following a symbolic link and without blocking on a FIFO, since
// its reader (`pci-segment status`) usually runs as root and the directory
// belongs to the worker.
package confine
