// Package loader is the privileged half of pci-segment, the only code that
// runs as root. It is kept small enough to read in one sitting: this package
// and ipc/, about 1,700 lines of code (2,200 with comments). The primitives
// it calls live with what they are about: privilege (capabilities, the
// service account), pins (the bpffs layout), netif, sandbox (the seccomp
// tables) and bpf (the objects). It imports nothing that parses YAML,
// serves HTTP or writes the audit log, and a test holds it to that.
// Known gap: it aims at 1,000 lines; taking over pins (takeover.go),
// following interfaces (links.go), the audit chains' first keys, socket
// activation and sd_notify took it past that. They could shrink by moving
// their decisions (which pins to adopt, which interfaces match, whether the
// directories are ready) into pure functions of pins, netif and privilege,
// leaving here only the privileged calls.
//
// What it does, in order (Enforce):
//  1. refuses to start without root and the capabilities it uses, on a
//     kernel without tcx, or without the service account; takes the pin
//     directory's lock (under --replace, stopping the instance holding
//     it), and refuses pins of another layout unless --replace
//     (takeover.go);
//  2. gives the service account its audit directory, creates the maps
//     (sized once and for all by --max-prefixes, --max-port-entries and
//     --max-flows), or adopts those pinned by an earlier instance of its
//     layout, and loads the programs (package bpf);
//  3. re-executes itself keeping only the capabilities it still needs
//     (reduce.go: BPF and NET_ADMIN to attach, SETUID, SETGID and SETPCAP
//     to start a worker with nothing, KILL to stop one), the loaded objects
//     passed on as descriptors;
//  4. starts the worker (`pci-segment worker`) as the service account with
//     no capabilities and NoNewPrivs, in a session of its own, and hands it
//     the map fds over a socketpair;
//  5. once the worker reports a policy applied, attaches the programs at the
//     head of each interface's tcx chain, or swaps them onto the links
//     already pinned there (BPF_LINK_UPDATE: no detach), and pins links
//     and maps, so that
//     enforcement outlives both processes (fail closed); then closes the
//     links and every map the worker does not get, keeping only what the
//     next worker (its maps) and the next interface (the programs) need;
//  6. follows interfaces as they come and go (links.go), when --interface
//     is a glob or absent;
//  7. supervises (supervise.go): checks every message from the worker
//     against ipc's permit table and replaces a worker that exits, breaks
//     the protocol or falls silent, with backoff.
//
// It never parses YAML, serves HTTP or writes the audit log; its inputs are
// its command line and the worker's messages, each typed and checked.
//
// After the re-exec it runs under its own seccomp filter
// (sandbox.LoaderPolicy): the hardening guide's denylist, less what
// starting a worker needs, and no bpf() command that creates or loads.
package loader

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/netif"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
)

// Config is the enforce command line.
type Config struct {
	Policies    []string // -f: files, directories, globs; read by the worker
	Interfaces  []string
	Labels      string
	PinDir      string
	AuditDir    string
	StateDir    string
	MetricsAddr string
	AllowRoot   bool
	// Replace takes over from a running instance or from pins of another
	// layout, swapping programs in place on the existing links.
	Replace bool
	// Monitor passes what the policy denies, counted and audited.
	Monitor bool
	// WebConfig is the metrics server's exporter-toolkit web
	// configuration (TLS, basic authentication); "" for plain HTTP.
	WebConfig string
	// listener is the metrics socket systemd passed, for the worker.
	listener *os.File
	// Syslog is the syslog socket the worker gets a connection to, for a
	// copy of each epoch's seal (and with SyslogRecords of every record);
	// "" for none.
	Syslog        string
	SyslogRecords bool
	LogLevel      string
	Seccomp       string // the worker's filter: allowlist or denylist
	// Sizes fix the map capacities (--max-prefixes, --max-port-entries,
	// --max-flows); a zero field takes bpf.DefaultSizes.
	Sizes bpf.Sizes
}

// Enforce runs the loader until SIGTERM/SIGINT or the worker's exit.
func Enforce(cfg Config, log hclog.Logger) error {
	// The worker runs in /: relative paths would mean something else there.
	paths := []*string{&cfg.AuditDir, &cfg.StateDir, &cfg.PinDir}
	if cfg.WebConfig != "" {
		paths = append(paths, &cfg.WebConfig)
	}
	for i := range cfg.Policies {
		paths = append(paths, &cfg.Policies[i])
	}
	for _, p := range paths {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("resolve %q: %w", *p, err)
		}
		*p = abs
	}
	cfg.Sizes = cfg.Sizes.OrDefault()
	if err := cfg.Sizes.Validate(); err != nil {
		return err
	}
	if spec := os.Getenv(objectsEnv); spec != "" {
		// Re-executed by reduce: the objects are loaded, the
		// capabilities cut to keptCaps. The exec through /proc/self/exe
		// named the process "exe"; ps -C pci-segment must list it.
		_ = os.WriteFile("/proc/self/comm", []byte("pci-segment"), 0)
		if err := checkReduced(); err != nil {
			return err
		}
		objs, readOnly, lock, keys, listener, err := adopt(spec, cfg.Sizes)
		if err != nil {
			pins.RemoveIfEmpty(cfg.PinDir)
			return err
		}
		cfg.listener = listener
		defer objs.Close()
		defer lock.Close() // last: the directory goes while still locked
		// Nothing pinned (a start that failed): leave no empty directory.
		defer pins.RemoveIfEmpty(cfg.PinDir)
		defer keys.Close()
		return run(cfg, log, objs, readOnly, keys)
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	// The metrics socket systemd passed (socket activation), checked;
	// then whatever else this process inherited beyond stdio goes at the
	// re-exec and never reaches the worker.
	listener, err := takeListener()
	if err != nil {
		return err
	}
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("mark inherited descriptors close-on-exec: %w", err)
	}
	if err := bpf.CheckKernel(); err != nil {
		return err
	}
	acct, err := workerAccount(cfg, log)
	if err != nil {
		return err
	}
	if _, err := netif.Resolve(cfg.Interfaces); err != nil {
		return err
	}
	bpffs, err := pins.CheckFS(cfg.PinDir)
	if err != nil {
		return err
	}
	lock, err := claim(cfg, log)
	if err != nil {
		return err
	}
	defer lock.Close()
	// Only a failed start returns: the directory Lock made goes, unless
	// it holds pins.
	defer pins.RemoveIfEmpty(cfg.PinDir)
	keys, err := prepareDirs(cfg, acct)
	if err != nil {
		return err
	}
	defer keys.Close()
	// The maps get their capacities here, once: a policy set that does
	// not fit them is refused by the worker, naming the flag to raise.
	objs, err := loadObjects(cfg, log)
	if err != nil {
		return err
	}
	defer objs.Close()
	return reduce(objs, bpffs, lock, keys, listener)
}

// takeListener takes the listening socket systemd passes the service by
// socket activation (LISTEN_FDS=1 at fd 3, LISTEN_PID this process), the
// metrics socket the worker serves on: it then opens none of its own, and
// the service needs no inet socket of its own to listen. Only one is
// expected; it must be a listening TCP socket.
func takeListener() (*os.File, error) {
	if os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) || os.Getenv("LISTEN_FDS") == "" {
		return nil, nil
	}
	defer os.Unsetenv("LISTEN_PID")
	defer os.Unsetenv("LISTEN_FDS")
	defer os.Unsetenv("LISTEN_FDNAMES")
	if n := os.Getenv("LISTEN_FDS"); n != "1" {
		return nil, fmt.Errorf("systemd passed %s sockets; pci-segment.socket has one, the metrics listener", n)
	}
	typ, err1 := unix.GetsockoptInt(3, unix.SOL_SOCKET, unix.SO_TYPE)
	acc, err2 := unix.GetsockoptInt(3, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	dom, err3 := unix.GetsockoptInt(3, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err := errors.Join(err1, err2, err3); err != nil || typ != unix.SOCK_STREAM || acc != 1 ||
		(dom != unix.AF_INET && dom != unix.AF_INET6) {
		return nil, fmt.Errorf("the socket systemd passed (fd 3) is not a listening TCP socket (%v)", err)
	}
	// Moved off fd 3, close-on-exec like everything inherited: reduce
	// passes it across the re-exec on purpose, with the objects.
	fd, err := unix.FcntlInt(3, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("keep the metrics socket: %w", err)
	}
	unix.Close(3)
	return os.NewFile(uintptr(fd), "metrics listener"), nil
}

// run is the loader after reduce: start the worker, attach once it has
// applied a policy, then supervise.
func run(cfg Config, log hclog.Logger, objs *bpf.DatapathObjects, readOnly map[string]*ebpf.Map, keys *os.File) error {
	if _, err := sandbox.Install(sandbox.LoaderPolicy()); err != nil {
		return fmt.Errorf("install the loader's seccomp filter: %w", err)
	}
	// Checked and logged before the re-exec; looked up again here.
	acct, err := workerAccount(cfg, hclog.NewNullLogger())
	if err != nil {
		return err
	}
	ifaces, err := netif.Resolve(cfg.Interfaces)
	if err != nil {
		return err
	}
	// Signals are caught before the first worker starts, so that SIGTERM
	// while it starts stops it too.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	sup := &supervisor{exe: self, cfg: cfg, acct: acct, maps: &objs.DatapathMaps, readOnly: readOnly, keys: keys, log: log}
	// Generations only grow, also over adopted maps: connection tracking
	// entries of the previous instance are judged again.
	var info bpf.DatapathInfoValue
	if err := objs.Info.Lookup(uint32(0), &info); err != nil {
		return fmt.Errorf("read the generation in force: %w", err)
	}
	sup.mon.Next = info.Generation + 1
	follow := &follower{cfg: cfg, objs: objs, log: log, attached: map[int]string{}}
	sup.onLinks = follow.follow
	sup.enforcing = follow.enforcing
	if sup.links, err = netif.Watch(log); err != nil {
		log.Error("interfaces that appear later are not followed", "error", err)
	}
	sup.onApplied = func() error {
		old, err := pins.OtherLayouts(cfg.PinDir)
		if err != nil {
			return err
		}
		for _, d := range old {
			pins.CarryConntrack(d, objs.Conntrack, log)
		}
		// Looked up again: the worker may have taken a while, and an
		// interface gone meanwhile must not stop the start.
		if now, err := netif.Resolve(cfg.Interfaces); err == nil {
			ifaces = now
		}
		// The maps first: once a program is swapped onto an old link,
		// what it reads must be pinned, so that status, check --live
		// and the next start find it even if what follows fails.
		if err := pins.Pin(cfg.PinDir, objs.All(), nil); err != nil {
			pins.RemoveIfEmpty(pins.LayoutDir(cfg.PinDir))
			return err
		}
		links, err := attach(objs, ifaces, cfg.PinDir, old)
		if err == nil {
			err = keepStray(objs, old, links, log)
		}
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return err
		}
		if err := pins.Pin(cfg.PinDir, objs.All(), links); err != nil {
			for _, l := range links {
				l.Close()
			}
			pins.RemoveIfEmpty(pins.LayoutDir(cfg.PinDir))
			return err
		}
		for _, d := range old {
			if err := pins.RemoveLayout(d, log); err != nil {
				return err
			}
		}
		// Pinned, the links and the maps the worker never gets (or gets
		// read-only) need no descriptor here: what stays is what the
		// next worker or the next interface needs.
		for _, l := range links {
			l.Close()
		}
		for name, m := range objs.All() {
			if !slices.Contains(bpf.WorkerMaps, name) || bpf.WorkerReadOnly[name] {
				m.Close()
			}
		}
		names := make([]string, len(ifaces))
		for i, f := range ifaces {
			names[i] = f.Name
			follow.attached[f.Index] = f.Name
		}
		for name := range links {
			if index, _, ok := pins.ParseLinkName(name); ok {
				if _, known := follow.attached[index]; !known {
					follow.attached[index] = fmt.Sprintf("ifindex %d", index)
				}
			}
		}
		log.Info("enforcing", "interfaces", strings.Join(names, ","), "pin_dir", pins.LayoutDir(cfg.PinDir), "worker_pid", sup.w.pid)
		return nil
	}
	// A policy the first worker cannot apply ends here: nothing is
	// attached or pinned yet.
	sig, err := sup.serve(sigc)
	if err != nil {
		return err
	}
	log.Info("stopping; pinned links keep enforcing", "signal", sig.String())
	return nil
}

// workerAccount applies the privilege overrides of the hardening guide.
func workerAccount(cfg Config, log hclog.Logger) (account, error) {
	skip, err := envflag.Bool("PCI_SEGMENT_SKIP_PRIVILEGE_DROP")
	if err != nil {
		return account{}, err
	}
	// The worker reads this one; a typo must stop the start here, before
	// any worker exists.
	if _, err := envflag.Bool("PCI_SEGMENT_DISABLE_SECCOMP"); err != nil {
		return account{}, err
	}
	name, group := "pci-segment", "pci-segment"
	if v := os.Getenv("PCI_SEGMENT_PRIVILEGE_USER"); v != "" {
		name = v
		log.Warn("development override in effect: worker user changed", "PCI_SEGMENT_PRIVILEGE_USER", v)
	}
	if v := os.Getenv("PCI_SEGMENT_PRIVILEGE_GROUP"); v != "" {
		group = v
		log.Warn("development override in effect: worker group changed", "PCI_SEGMENT_PRIVILEGE_GROUP", v)
	} else if name != "pci-segment" {
		group = name
	}
	if skip || cfg.AllowRoot {
		if name != "pci-segment" || group != "pci-segment" {
			return account{}, fmt.Errorf("conflicting overrides: PCI_SEGMENT_PRIVILEGE_USER/_GROUP name an account, while PCI_SEGMENT_SKIP_PRIVILEGE_DROP or --allow-root keep uid 0; use one of them")
		}
		// The worker stays uid 0 but still gets no capabilities,
		// NoNewPrivs and seccomp.
		log.Warn("development override in effect: worker keeps uid 0 (capabilities are still dropped)", "PCI_SEGMENT_SKIP_PRIVILEGE_DROP", skip, "allow_root", cfg.AllowRoot)
		return account{user: "root", group: "root"}, nil
	}
	id, err := privilege.LookupAccount(name, group)
	return account{user: name, group: group, Identity: id}, err
}

// prepareDirs gives the service account the audit and state directories,
// the only places the worker writes, and keeps in the state directory a
// root-only directory for the audit chains' first keys, whose descriptor it
// returns: the loader writes there without being able to traverse the
// account's directory (it holds no CAP_DAC_OVERRIDE).
func prepareDirs(cfg Config, acct account) (*os.File, error) {
	var keys *os.File
	for _, d := range []struct {
		path, what string
		// The state directory lets others pass (not list), so that the
		// loader, root without CAP_DAC_*, reaches its key directory.
		mode uint32
	}{{cfg.AuditDir, "audit", 0o750}, {cfg.StateDir, "state", 0o751}} {
		if err := os.MkdirAll(d.path, os.FileMode(d.mode)); err != nil {
			return nil, fmt.Errorf("create %s directory: %w", d.what, err)
		}
		// Opened without following a symlink, then changed through the
		// fd: a path a worker could have replaced never redirects
		// root's chown. O_PATH: root without CAP_DAC_* may not read the
		// account's directory, only look at it.
		fd, err := unix.Open(d.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s directory %s (a symlink is refused): %w", d.what, d.path, err)
		}
		// As tmpfiles.d leaves it (the account's, the mode above, and
		// the key directory root's), nothing to change. Otherwise root's
		// for a moment (CAP_CHOWN), so that the mode can be set and the
		// key directory made without CAP_FOWNER or CAP_DAC_OVERRIDE, then
		// the account's.
		var st unix.Stat_t
		ready := unix.Fstat(fd, &st) == nil && st.Uid == acct.UID && st.Gid == acct.GID && st.Mode&0o7777 == d.mode
		if ready && d.what == "state" {
			if keys, err = keyDir(fd, false); err != nil {
				ready = false
			}
		}
		if !ready {
			err = unix.Fchownat(fd, "", 0, 0, unix.AT_EMPTY_PATH)
			if err == nil {
				err = unix.Fchmodat(fd, ".", d.mode, 0)
			}
			if err == nil && d.what == "state" {
				keys, err = keyDir(fd, true)
			}
			if err == nil {
				err = unix.Fchownat(fd, "", int(acct.UID), int(acct.GID), unix.AT_EMPTY_PATH)
			}
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				err = fmt.Errorf("%w: without CAP_CHOWN the directories must exist as tmpfiles.d/pci-segment.conf makes them (systemd-tmpfiles --create)", err)
			}
		}
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("give %s directory to %s: %w", d.what, acct.user, err)
		}
	}
	return keys, nil
}

// keyDir opens, after making it when make is set, the root-only key
// directory in the state directory open as parent.
func keyDir(parent int, make bool) (*os.File, error) {
	if make {
		if err := unix.Mkdirat(parent, ipc.KeyDir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("make %s: %w", ipc.KeyDir, err)
		}
	}
	fd, err := unix.Openat(parent, ipc.KeyDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s (a symlink is refused): %w", ipc.KeyDir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Uid != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("%s in the state directory is not root's (uid %d): remove it; the loader makes it", ipc.KeyDir, st.Uid)
	}
	if err := unix.Fchmod(fd, 0o700); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("restrict %s: %w", ipc.KeyDir, err)
	}
	return os.NewFile(uintptr(fd), ipc.KeyDir), nil
}

// workerArgs is the worker's command line: what it needs to find its
// input and output, never anything it could use against the loader.
func workerArgs(cfg Config, acct account) []string {
	args := []string{"--identity", acct.Identity.String(), "--labels", cfg.Labels, "--audit-dir", cfg.AuditDir, "--state-dir", cfg.StateDir,
		"--metrics-addr", cfg.MetricsAddr, "--log-level", cfg.LogLevel,
		"--max-prefixes", strconv.Itoa(cfg.Sizes.Prefixes), "--max-port-entries", strconv.Itoa(cfg.Sizes.PortEntries),
		"--max-flows", strconv.Itoa(cfg.Sizes.Flows)}
	if cfg.AllowRoot {
		args = append(args, "--allow-root")
	}
	if cfg.Monitor {
		args = append(args, "--mode", "monitor")
	}
	if cfg.listener != nil {
		args = append(args, "--metrics-listener")
	}
	if cfg.WebConfig != "" {
		args = append(args, "--web-config-file", cfg.WebConfig)
	}
	if cfg.SyslogRecords && cfg.Syslog != "" {
		args = append(args, "--syslog-every-record")
	}
	if cfg.Seccomp != "" {
		args = append(args, "--seccomp", cfg.Seccomp)
	}
	for _, p := range cfg.Policies {
		args = append(args, "-f", p)
	}
	return args
}

// workerEnv passes the worker only the variables meant for it.
func workerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PCI_SEGMENT_") {
			env = append(env, kv)
		}
	}
	return env
}

// attach puts both programs at the head of each interface's tcx chain and
// returns the links by pin name. A link already pinned for an interface and
// direction (adopted, or an old layout's under --replace) keeps its place
// and gets the new program in place; the others are created directly
// (BPF_LINK_CREATE with BPF_F_BEFORE and no anchor: the head): on failure
// link.AttachTCX probes the kernel by loading a program, which the loader's
// filter refuses, and would report "not supported" in place of the
// kernel's answer.
func attach(objs *bpf.DatapathObjects, ifaces []netif.Interface, pinDir string, old []string) (map[string]link.Link, error) {
	out := map[string]link.Link{}
	fail := func(err error) (map[string]link.Link, error) {
		for _, done := range out {
			done.Close()
		}
		return nil, err
	}
	for _, f := range ifaces {
		for _, a := range []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
			dir  string
		}{
			{objs.PciIngress, ebpf.AttachTCXIngress, "ingress"},
			{objs.PciEgress, ebpf.AttachTCXEgress, "egress"},
		} {
			var l link.Link
			var err error
			if p := pins.FindLink(pinDir, old, f.Index, a.dir); p != "" {
				l, err = pins.Swap(p, a.prog)
			} else if l, err = link.AttachRawLink(link.RawLinkOptions{Target: f.Index, Program: a.prog, Attach: a.typ, Flags: unix.BPF_F_BEFORE}); err != nil {
				err = fmt.Errorf("attach %s program to %s (ifindex %d): %w", a.dir, f.Name, f.Index, err)
			}
			if err != nil {
				return fail(err)
			}
			out[pins.LinkName(f.Index, a.dir)] = l
		}
	}
	return out, nil
}
