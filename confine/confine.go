package confine

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// Paths are what the worker may touch: its command line.
type Paths struct {
	// Policies are the -f arguments: files, directories or glob patterns.
	// Relative ones are taken from the current directory, as the policy
	// loader takes them.
	Policies []string
	// AuditDir and StateDir must exist.
	AuditDir string
	StateDir string
	// MetricsAddr is the host:port the worker serves metrics on.
	MetricsAddr string
	// WebConfig is the exporter-toolkit web configuration file (TLS,
	// basic authentication), if any: its directory is granted read, for
	// it and the certificates it names, which must sit beside it.
	WebConfig string
}

// RulesetABI is the Landlock ABI the ruleset asks for; an older kernel gets
// what its own ABI covers.
const RulesetABI = 7

var rulesetConfig = landlock.V7

// Access sets, as Landlock rights.
const (
	readAccess = ll.AccessFSReadFile | ll.AccessFSReadDir
	// writeAccess lacks execute, refer (rename across directories),
	// ioctl on devices, and creating symbolic links, FIFOs, sockets and
	// device nodes: the worker writes plain files and directories.
	writeAccess = readAccess | ll.AccessFSWriteFile | ll.AccessFSTruncate |
		ll.AccessFSMakeReg | ll.AccessFSRemoveFile | ll.AccessFSMakeDir | ll.AccessFSRemoveDir
	fileReadAccess = ll.AccessFSReadFile
)

// Grant is one file system rule: Path and everything beneath it.
type Grant struct {
	Path string `json:"path"`
	// Access is "read" or "read-write"; Rights are the Landlock rights
	// granted, as the kernel documentation names them.
	Access string   `json:"access"`
	Rights []string `json:"rights"`
	Why    string   `json:"why"`

	rights uint64
}

// Port is one TCP port rule.
type Port struct {
	// Port 0 means a port the kernel picks from the ephemeral range.
	Port uint16 `json:"port"`
	Why  string `json:"why"`
}

// Report is what Worker applied, for the worker's log, the state directory
// and `pci-segment status`.
type Report struct {
	PID  int       `json:"pid"`
	UID  int       `json:"uid"`
	Time time.Time `json:"time"`

	// ABI is the kernel's Landlock ABI version; 0 when Landlock is not
	// available (not built in, or not enabled at boot).
	ABI int `json:"abi"`
	// RulesetABI is the ABI the ruleset asks for (see [RulesetABI]).
	RulesetABI int `json:"ruleset_abi"`
	// Enforced says whether anything is restricted at all; Filesystem,
	// Network and Scoped which kinds.
	Enforced bool `json:"enforced"`
	// Filesystem: file access outside Paths is refused.
	Filesystem bool `json:"filesystem"`
	// Network: TCP bind outside BindTCP, and every TCP connect, is
	// refused.
	Network bool `json:"network"`
	// Scoped: signals to processes outside the worker and connections to
	// abstract UNIX sockets outside it are refused.
	Scoped bool `json:"scoped"`

	// HandledFS, HandledNet and Scopes name the rights the kernel
	// restricts; an action not listed is not governed by Landlock.
	HandledFS  []string `json:"handled_fs"`
	HandledNet []string `json:"handled_net"`
	Scopes     []string `json:"scopes"`

	// Paths are the file system grants, BindTCP and ConnectTCP the
	// network ones. ConnectTCP is empty: the worker connects nowhere.
	Paths      []Grant `json:"paths"`
	BindTCP    []Port  `json:"bind_tcp"`
	ConnectTCP []Port  `json:"connect_tcp"`

	// Missing lists policy paths for which no location existed to grant;
	// the policy loader reports them as errors of its own.
	Missing []string `json:"missing,omitempty"`
	// NotRestricted says what Landlock at this ABI leaves alone.
	NotRestricted []string `json:"not_restricted"`
}

// Plan returns the grants for p without applying them: the Report that
// Worker would return on a kernel with Landlock ABI abi.
func Plan(p Paths, abi int) (Report, error) {
	r := Report{
		PID: os.Getpid(), UID: os.Getuid(), Time: time.Now().UTC(),
		ABI: abi, RulesetABI: RulesetABI,
		Paths: []Grant{}, BindTCP: []Port{}, ConnectTCP: []Port{},
	}
	port, resolver, err := metricsPort(p.MetricsAddr)
	if err != nil {
		return r, err
	}
	add := func(path string, rights uint64, why string) {
		for i, g := range r.Paths {
			if g.Path == path {
				r.Paths[i].rights |= rights
				return
			}
		}
		r.Paths = append(r.Paths, Grant{Path: path, rights: rights, Why: why})
	}

	for _, pol := range p.Policies {
		dirs, err := policyDirs(pol)
		if err != nil {
			return r, err
		}
		if len(dirs) == 0 {
			r.Missing = append(r.Missing, pol)
		}
		for _, d := range dirs {
			add(d, readAccess, "policy files (-f "+pol+")")
		}
	}
	// /proc/self is a symbolic link: the rule must name what it points to.
	self := "/proc/" + strconv.Itoa(os.Getpid())
	add(self, readAccess, "its own status, threads and descriptors (privilege checks, process metrics)")
	if isFile("/proc/stat") {
		add("/proc/stat", fileReadAccess, "boot time, for the process_start_time_seconds metric")
	}
	for _, f := range resolver {
		add(f, fileReadAccess, "resolve the metrics address "+p.MetricsAddr)
	}
	if p.WebConfig != "" {
		dir, err := filepath.Abs(filepath.Dir(p.WebConfig))
		if err != nil {
			return r, fmt.Errorf("plan landlock rules: --web-config-file %s: %w", p.WebConfig, err)
		}
		add(dir, readAccess, "the metrics server's TLS and authentication (--web-config-file) and its certificates")
	}
	for _, d := range []struct{ path, flag, why string }{
		{p.AuditDir, "--audit-dir", "the audit log"},
		{p.StateDir, "--state-dir", "worker state and this report"},
	} {
		if d.path == "" {
			return r, fmt.Errorf("plan landlock rules: %s is empty", d.flag)
		}
		abs, err := filepath.Abs(d.path)
		if err != nil {
			return r, fmt.Errorf("plan landlock rules: %s %s: %w", d.flag, d.path, err)
		}
		if st, err := os.Stat(abs); err != nil || !st.IsDir() {
			return r, fmt.Errorf("plan landlock rules: %s %s is not a directory (the loader creates it): %v",
				d.flag, abs, err)
		}
		add(abs, writeAccess, d.why)
	}
	r.BindTCP = append(r.BindTCP, Port{Port: port, Why: "serve metrics on " + p.MetricsAddr})

	handledFS, handledNet, scoped := supported(abi)
	for i := range r.Paths {
		g := &r.Paths[i]
		g.Access = "read"
		if g.rights&ll.AccessFSWriteFile != 0 {
			g.Access = "read-write"
		}
		g.Rights = rightNames(g.rights&handledFS, fsRightNames)
	}
	r.HandledFS = rightNames(handledFS, fsRightNames)
	r.HandledNet = rightNames(handledNet, netRightNames)
	r.Scopes = rightNames(scoped, scopeNames)
	r.Filesystem = handledFS != 0
	r.Network = handledNet != 0
	r.Scoped = scoped != 0
	r.Enforced = r.Filesystem || r.Network || r.Scoped
	r.NotRestricted = notRestricted(abi)
	return r, nil
}

// Worker applies the plan for p to every thread of the calling process and
// returns what it applied. Without Landlock it restricts nothing and
// returns a report that says so, with a nil error; an error means the
// rules could not be built or enforced, and the caller must not go on.
//
// Call it before the seccomp filter (see the package documentation) and
// before reading any policy. Descriptors already open, and those received
// later over a socket, are not affected.
func Worker(p Paths) (Report, error) {
	abi, err := ll.LandlockGetABIVersion()
	if err != nil {
		abi = 0 // ENOSYS or EOPNOTSUPP: not built in, or not enabled at boot
	}
	r, err := Plan(p, abi)
	if err != nil {
		return r, err
	}
	if !r.Enforced {
		return r, nil
	}
	preload()

	// procfs makes a new inode for /proc/PID each time its dentry is
	// looked up afresh (after the dentry cache dropped it), and a Landlock
	// rule follows the inode: holding the directory open keeps the dentry,
	// and so the rule, alive.
	self := "/proc/" + strconv.Itoa(os.Getpid())
	procSelf, err := unix.Open(self, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, fmt.Errorf("open own /proc directory: %w", err)
	}
	keptOpen = append(keptOpen, procSelf)

	var rules []landlock.Rule
	for _, g := range r.Paths {
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(g.rights), g.Path))
	}
	for _, port := range r.BindTCP {
		rules = append(rules, landlock.BindTCP(port.Port))
	}
	if err := rulesetConfig.BestEffort().Restrict(rules...); err != nil {
		return r, fmt.Errorf("apply landlock rules: %w", err)
	}
	return r, nil
}

// keptOpen are descriptors that must live as long as the process.
var keptOpen []int

// preload makes the runtime and libraries read, while they still can, what
// they otherwise read lazily on first use, and keeps the metrics listener a
// socket that Landlock governs.
func preload() {
	// The local time zone (/etc/localtime), used by the operator log's
	// time stamps; without it they would silently turn UTC.
	time.Now().Zone()

	// cilium/ebpf sizes per-CPU values from
	// /sys/devices/system/cpu/possible, read once on first use: when the
	// worker opens the counter map fd it receives, or reads it.
	ebpf.PossibleCPU()

	// Go's net package learns the listen backlog from
	// /proc/sys/net/core/somaxconn and probes IPv6 support by binding
	// port 0 on ::1, both on the first listen; under the rules the probe
	// fails and IPv6 looks unsupported. A listen whose Control refuses
	// every socket does both here and binds nothing.
	refuse := errors.New("preload only")
	lc := net.ListenConfig{Control: func(string, string, syscall.RawConn) error { return refuse }}
	if ln, err := lc.Listen(context.Background(), "tcp", ":0"); err == nil {
		ln.Close()
	}

	// Since Go 1.24 net.Listen opens a Multipath TCP socket where the
	// kernel has MPTCP, and Landlock's TCP rules do not apply to MPTCP:
	// the metrics listener would bind outside the rule. GODEBUG changes
	// made with Setenv take effect at once.
	godebug := os.Getenv("GODEBUG")
	if godebug != "" {
		godebug += ","
	}
	os.Setenv("GODEBUG", godebug+"multipathtcp=0")
}

// metricsPort returns the TCP port of addr, and the resolver's files when
// the host or the port is a name rather than a number.
func metricsPort(addr string) (uint16, []string, error) {
	host, service, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, nil, fmt.Errorf("plan landlock rules: metrics address %q: %w", addr, err)
	}
	var resolver []string
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			resolver = append(resolver,
				"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf")
		}
	}
	port, err := strconv.ParseUint(service, 10, 16)
	if err != nil {
		p, lerr := net.LookupPort("tcp", service)
		if lerr != nil {
			return 0, nil, fmt.Errorf("plan landlock rules: metrics address %q: port: %w", addr, lerr)
		}
		port = uint64(p)
		resolver = append(resolver, "/etc/services")
	}
	var existing []string
	for _, f := range resolver {
		if isFile(f) {
			existing = append(existing, f)
		}
	}
	return uint16(port), existing, nil
}

// PolicyDirs returns the directories the -f arguments read from, as the
// worker's Landlock rules grant them: what a reload watches.
func PolicyDirs(policies []string) ([]string, error) {
	var out []string
	for _, p := range policies {
		dirs, err := policyDirs(p)
		if err != nil {
			return nil, err
		}
		for _, d := range dirs {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// policyDirs returns the directories to grant for one -f argument: where
// the policy loader will look, and where a symbolic link there points.
// None when nothing exists there yet.
func policyDirs(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	// dir is where the loader looks; named is what the argument names,
	// when that exists.
	var dir, named string
	st, err := os.Stat(p)
	switch {
	case err == nil && st.IsDir():
		dir, named = p, p
	case err == nil:
		dir, named = filepath.Dir(p), p
	case hasMeta(p):
		dir = globBase(p)
	default:
		dir = filepath.Dir(p)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("plan landlock rules: policy path %s: %w", p, err)
	}
	var out []string
	if isDir(abs) {
		out = append(out, abs)
	}
	if named == "" {
		named = abs
	}
	if real, err := filepath.EvalSymlinks(named); err == nil {
		if !isDir(real) {
			real = filepath.Dir(real)
		}
		if real, err = filepath.Abs(real); err == nil && isDir(real) && !slices.Contains(out, real) {
			out = append(out, real)
		}
	}
	return out, nil
}

// hasMeta mirrors the policy loader: these make a missing path a pattern.
func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// globBase is the directory part of a pattern before its first wildcard.
func globBase(p string) string {
	parts := strings.Split(filepath.Clean(p), string(filepath.Separator))
	var keep []string
	for _, part := range parts {
		if hasMeta(part) {
			break
		}
		keep = append(keep, part)
	}
	switch {
	case len(keep) == 0:
		return "."
	case len(keep) == 1 && keep[0] == "":
		return "/"
	}
	return strings.Join(keep, string(filepath.Separator))
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

func isFile(p string) bool { st, err := os.Stat(p); return err == nil && st.Mode().IsRegular() }

// supported returns the rights of the ruleset that a kernel with Landlock
// ABI abi restricts.
func supported(abi int) (fs, network, scoped uint64) {
	want := rulesetConfig
	switch {
	case abi >= 5:
		fs = 1<<16 - 1
	case abi >= 3:
		fs = 1<<15 - 1
	case abi == 2:
		fs = 1<<14 - 1
	case abi == 1:
		fs = 1<<13 - 1
	}
	if abi >= 4 {
		network = ll.AccessNetBindTCP | ll.AccessNetConnectTCP
	}
	if abi >= 6 {
		scoped = ll.ScopeAbstractUnixSocket | ll.ScopeSignal
	}
	fs &= uint64(want.HandledAccessFS)
	network &= uint64(want.HandledAccessNet)
	scoped &= uint64(want.Scoped)
	return fs, network, scoped
}

// notRestricted lists what Landlock at ABI abi leaves to other mechanisms.
func notRestricted(abi int) []string {
	out := []string{
		"descriptors opened before the rules (map fds, the channel to the loader, standard streams)",
		"stat, chmod, chown, utime, setxattr and ioctl on files that are not devices",
	}
	switch {
	case abi == 0:
		return []string{"everything: the kernel has no Landlock (not built in, or not in the lsm= boot list)"}
	case abi < 4:
		out = append(out, "every network operation (Landlock ABI 4 adds TCP bind and connect)")
	default:
		out = append(out,
			"UDP, SCTP and Multipath TCP (IPPROTO_MPTCP) sockets: only classic TCP bind and connect are covered")
	}
	if abi < 3 {
		out = append(out, "truncating files (Landlock ABI 3)")
	}
	if abi < 5 {
		out = append(out, "ioctl on device files (Landlock ABI 5)")
	}
	if abi < 6 {
		out = append(out, "signals and abstract UNIX sockets (Landlock ABI 6)")
	}
	out = append(out, "connecting to pathname UNIX sockets (Landlock ABI 9)")
	return out
}

var (
	fsRightNames = []string{
		"execute", "write_file", "read_file", "read_dir", "remove_dir", "remove_file",
		"make_char", "make_dir", "make_reg", "make_sock", "make_fifo", "make_block", "make_sym",
		"refer", "truncate", "ioctl_dev", "resolve_unix",
	}
	netRightNames = []string{"bind_tcp", "connect_tcp", "bind_udp", "connect_send_udp"}
	scopeNames    = []string{"abstract_unix_socket", "signal"}
)

func rightNames(set uint64, names []string) []string {
	out := []string{}
	for set != 0 {
		b := bits.TrailingZeros64(set)
		if b < len(names) {
			out = append(out, names[b])
		} else {
			out = append(out, "1<<"+strconv.Itoa(b))
		}
		set &^= 1 << b
	}
	return out
}
