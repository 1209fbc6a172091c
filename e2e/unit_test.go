package e2e

import (
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/privilege"
)

// The loader under exactly pci-segment.service's capability bounding set
// (setpriv, as systemd would give it), over directories as the unit's
// tmpfiles.d entries make them, under its system call filter and address
// families: it enforces, and the worker is as sealed as ever. Exercised this
// way: CapabilityBoundingSet (with AmbientCapabilities empty, no inheritable
// set), SystemCallFilter with SystemCallErrorNumber=EPERM,
// RestrictAddressFamilies and NoNewPrivileges. Checked only offline, by
// systemd-analyze verify and security (systemd/units_test.go): the file
// system, mount, namespace, device and IP settings, which need systemd
// itself to apply.
func TestLoaderRunsUnderTheUnitsBoundingSet(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(l.Host4, 443), ap(l.Host4, 22))
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	u, err := user.Lookup(e.user)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// As tmpfiles.d/pci-segment.conf makes them.
	for d, mode := range map[string]os.FileMode{e.auditDir: 0o750, e.stateDir: 0o750} {
		os.Mkdir(d, mode)
		os.Chmod(d, mode)
		os.Chown(d, uid, gid)
	}
	os.Mkdir(e.keyDir, 0o700)

	// The unit's bounding set (setpriv), then its system call filter
	// and address families (this test binary as a wrapper, building them
	// from the unit with systemd-analyze syscall-filter), then the loader.
	bounding := "-all,+bpf,+net_admin,+perfmon,+setuid,+setgid,+setpcap,+kill"
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit, _ := filepath.Abs("../systemd/pci-segment.service")
	// The metrics socket as pci-segment.socket passes it: the unit allows
	// no inet socket of the service's own.
	var ln *net.TCPListener
	err = l.Do(l.HostNS, func() (err error) {
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9720})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sock, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	args := e.cmd.Args
	e.cmd.Args = append(append(append([]string{}, args[:3]...), "sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`,
		"setpriv", "--bounding-set="+bounding, "--inh-caps=-all", "--", self), args[3:]...)
	e.cmd.Env = append(e.cmd.Env, unitFilterEnv+"="+unit)
	e.cmd.ExtraFiles = []*os.File{sock}
	e.start(t)
	e.waitEnforcing(t)
	sock.Close()
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	if body, code := e.ready(t); code != 200 {
		t.Errorf("/readyz on the passed socket: %d %s", code, body)
	}
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))

	loader, worker := e.pids(t)
	lp, err := privilege.ReadProcess(loader)
	if err != nil {
		t.Fatal(err)
	}
	if names := strings.Join(privilege.CapNames(lp.CapBnd), ","); strings.Contains(names, "chown") || strings.Contains(names, "dac") {
		t.Errorf("the loader's bounding set %s is wider than the unit's", names)
	}
	wp, err := privilege.ReadProcess(worker)
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range append([]privilege.ThreadState{wp.ThreadState}, wp.Threads...) {
		if th.CapEff|th.CapPrm|th.CapBnd|th.CapInh|th.CapAmb != 0 || !th.NoNewPrivs || th.Seccomp != privilege.SeccompFilter {
			t.Errorf("worker thread %d: %+v", th.TID, th)
		}
	}
}

// Without CAP_CHOWN and without the directories tmpfiles.d makes, the
// loader says what to do, before any worker exists.
func TestWithoutTheUnitsDirectoriesTheLoaderNamesTmpfiles(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	args := e.cmd.Args
	e.cmd.Args = append(append(append([]string{}, args[:3]...), "setpriv", "--bounding-set=-all,+bpf,+net_admin,+perfmon,+setuid,+setgid,+setpcap,+kill", "--inh-caps=-all", "--"), args[3:]...)
	failsToStart(t, l, e, "tmpfiles.d/pci-segment.conf")
	if strings.Contains(e.out.String(), "worker started") {
		t.Errorf("a worker was started:\n%s", e.out.String())
	}
}
