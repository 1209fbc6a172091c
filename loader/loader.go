// Package loader is the privileged half of pci-segment, the only code that
// runs as root (in pci-segment-loader, a binary of its own). It decides and
// orders, and with ipc/ it is about 1,000 lines of code, to be read in one
// sitting; the privileged calls live with what they are about, each with
// its own tests: privilege (capabilities, the service account, the worker
// binary, inherited descriptors), statedir (the worker's directories, the
// audit keys), pins (bpffs, adopting pinned maps), tcx (links), netif,
// systemd (the socket it passes), sandbox (seccomp), mac and bpf. A test
// holds loader/ and ipc/ to a budget and counts every package the binary
// links against another (size_test.go). It imports nothing that parses
// YAML, serves HTTP or writes the audit log (a test holds it to that too):
// its inputs are its command line and the worker's messages, each typed
// and checked; the worker's command line it passes on unread.
//
// Enforce, in order:
//  1. refuses to start without root and the capabilities it uses, on a
//     kernel without tcx, or without the service account; opens the
//     worker binary, root's alone; closes what it inherited but systemd's
//     socket; takes the pin directory's lock
//     (--replace stops the holder: takeover.go);
//  2. gives the service account its directories and loads the programs,
//     over the pinned maps of its layout or fresh maps sized by --max-*,
//     refusing pins of another layout unless --replace (pins.LoadDatapath);
//  3. cuts every thread to the capabilities it still needs (caps.go):
//     CAP_BPF and CAP_NET_ADMIN to attach to interfaces that appear later,
//     CAP_SETUID, CAP_SETGID and CAP_SETPCAP to start a new worker with
//     nothing, CAP_KILL to stop one; installs its own seccomp filter
//     (sandbox.LoaderPolicy: no bpf() command that creates or loads) and
//     checks its MAC confinement;
//  4. starts the worker as the service account with nothing, under
//     NoNewPrivs, in a session of its own (spawn.go), and hands it its maps;
//  5. once the worker has applied a policy, attaches and pins (tcx), so
//     that enforcement outlives both processes, closes what the next worker
//     and the next interface do not need, and follows interfaces;
//  6. supervises (supervise.go): every message is checked against ipc's
//     permit table; a worker that exits, breaks the protocol or falls
//     silent is replaced, with backoff.
package loader

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/mac"
	"github.com/pci-segment/pci-segment/netif"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/privilege"
	"github.com/pci-segment/pci-segment/sandbox"
	"github.com/pci-segment/pci-segment/statedir"
	"github.com/pci-segment/pci-segment/systemd"
	"github.com/pci-segment/pci-segment/tcx"
)

// Config is the enforce command line; the directories are absolute, and
// so are the paths in WorkerArgs (enforceflags makes them so).
type Config struct {
	Interfaces []string
	PinDir     string
	AuditDir   string
	StateDir   string
	// KeyDir is the root-only directory of the audit chains' first keys.
	KeyDir    string
	AllowRoot bool
	// Replace takes over from a running instance or from pins of another
	// layout, swapping programs in place on the existing links.
	Replace bool
	// listener is the metrics socket systemd passed, for the worker.
	listener *os.File
	// Syslog is the syslog socket the worker gets a connection to, for a
	// copy of each epoch's seal; "" for none.
	Syslog string
	// Sizes fix the map capacities (--max-prefixes, --max-port-entries,
	// --max-flows); a zero field takes bpf.DefaultSizes.
	Sizes bpf.Sizes
	// WorkerBinary is the pci-segment binary the worker runs from, and
	// WorkerArgs its command line after `worker --identity ...`: the
	// loader passes them on unread.
	WorkerBinary string
	WorkerArgs   []string
}

// Enforce runs the loader until SIGTERM/SIGINT or the worker's exit.
func Enforce(cfg Config, log hclog.Logger) error {
	cfg.Sizes = cfg.Sizes.OrDefault()
	if err := cfg.Sizes.Validate(); err != nil {
		return err
	}
	if err := checkPrivileges(); err != nil {
		return err
	}
	// Opened before anything inherited is closed: it may be a descriptor
	// pci-segment enforce passed.
	exe, err := privilege.OpenExecutable(cfg.WorkerBinary)
	if err != nil {
		return fmt.Errorf("the worker binary (--worker-binary): %w", err)
	}
	defer exe.Close()
	// The metrics socket systemd passed (socket activation), checked;
	// whatever else this process inherited beyond stdio is closed.
	listener, err := systemd.Listener()
	if err != nil {
		return err
	}
	if err := privilege.CloseInherited(listener); err != nil {
		return err
	}
	cfg.listener = listener
	if err := bpf.CheckKernel(); err != nil {
		return err
	}
	acct, err := privilege.WorkerAccount(cfg.AllowRoot, log)
	if err != nil {
		return err
	}
	ifaces, err := netif.Resolve(cfg.Interfaces)
	if err != nil {
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
	defer lock.Close() // last: the directory goes while still locked
	// Only a failed start returns: the directory Lock made goes, unless
	// it holds pins.
	defer pins.RemoveIfEmpty(cfg.PinDir)
	keys, err := statedir.Prepare(cfg.AuditDir, cfg.StateDir, cfg.KeyDir, acct.UID, acct.GID)
	if err != nil {
		return err
	}
	defer keys.Close()
	// The maps get their capacities here, once: a policy set that does
	// not fit them is refused by the worker, naming the flag to raise.
	objs, err := pins.LoadDatapath(cfg.PinDir, cfg.Replace, cfg.Sizes, log)
	if err != nil {
		return err
	}
	defer objs.Close()
	readOnly, err := pins.ReadOnlyMaps(objs, bpffs)
	if err != nil {
		return err
	}
	if err := privilege.LimitProcess(privilege.CapMask(keptCaps...)); err != nil {
		return fmt.Errorf("drop the capabilities only set-up needs: %w", err)
	}
	debug.FreeOSMemory() // what loading used: the object file, the verifier's buffers
	sup := &supervisor{exe: fmt.Sprintf("/proc/self/fd/%d", exe.Fd()), cfg: cfg, acct: acct, maps: &objs.DatapathMaps, readOnly: readOnly, keys: keys, log: log}
	return run(sup, objs, ifaces)
}

// run is the loader after the drop: start the worker, attach once it has
// applied a policy, then supervise.
func run(sup *supervisor, objs *bpf.DatapathObjects, ifaces []netif.Interface) error {
	cfg, log := sup.cfg, sup.log
	if _, err := sandbox.Install(sandbox.LoaderPolicy()); err != nil {
		return fmt.Errorf("install the loader's seccomp filter: %w", err)
	}
	// After the drop, as the hardening guide checks it: the domain and
	// profile the kernel confines this process to now.
	confinement, err := mac.Check(mac.Loader(), mac.Running)
	if err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	confinement.Log(log)
	// Signals are caught before the first worker starts, so that SIGTERM
	// while it starts stops it too.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	links := &tcx.Links{PinDir: cfg.PinDir, Names: cfg.Interfaces, Objs: objs, Log: log}
	sup.onLinks = func() []ipc.Message { return linkEvents(links.Follow(), 0) }
	sup.enforcing = func(count uint32) []ipc.Message { return linkEvents(links.Attached(), count) }
	if sup.links, err = netif.Watch(log); err != nil {
		log.Error("interfaces that appear later are not followed", "error", err)
	}
	sup.onApplied = func() error {
		names, err := links.Start(ifaces)
		if err != nil {
			return err
		}
		// Pinned, the maps the worker never gets (or gets read-only)
		// need no descriptor here.
		for name, m := range objs.All() {
			if !slices.Contains(bpf.WorkerMaps, name) || bpf.WorkerReadOnly[name] {
				m.Close()
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
	sup.notify("STOPPING=1")
	log.Info("stopping; pinned links keep enforcing", "signal", sig.String())
	return nil
}

// linkEvents are link changes as the worker audits them, with count.
func linkEvents(changes []tcx.Change, count uint32) []ipc.Message {
	out := make([]ipc.Message, len(changes))
	for i, c := range changes {
		ev := ipc.Event{Kind: ipc.EventLinkDetached, Ifindex: uint32(c.Index), Count: count, Text: c.Name}
		if c.Attached {
			ev.Kind = ipc.EventLinkAttached
		}
		out[i] = ev
	}
	return out
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
