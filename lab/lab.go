// Package lab builds throw-away test networks for end-to-end tests.
//
// A Lab is two network namespaces joined by a veth pair: a "host" namespace,
// where pci-segment attaches to the host end of the veth, and a "peer"
// namespace standing for the rest of the network. Every address is fixed and
// private to the lab, so tests can be written against constants, and two labs
// built in parallel never see each other:
//
//	host ns  vh<id>  10.77.1.1/24  fd00:77:1::1/64
//	           |
//	peer ns  vp<id>  10.77.1.2/24  fd00:77:1::2/64
//	                 10.77.2.2/24  fd00:77:2::2/64   (outside the host's subnet,
//	                                                  routed by the host via the peer)
//
// AddVLAN and AddQinQ add a VLAN sub-interface on both ends with a subnet
// of its own (10.77.<100+id>.0/24, 10.78.<inner>.0/24), whose traffic
// crosses the veth tagged; see VLAN.
//
// Traffic helpers (ListenTCP, DialTCP, ServeUDPEcho, UDPExchange) use only
// Go's net package, from sockets created inside a namespace by Do. A dial
// that gets no answer fails with ErrTimeout (the packet was dropped); one
// answered by a RST or ICMP port unreachable fails with ErrRefused.
//
// Building a lab needs root, iproute2 and nsenter (util-linux). New skips the
// test with a reason when not root, or fails it when PCI_SEGMENT_E2E is set
// (see package testenv). Everything a lab creates is removed in t.Cleanup.
package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/testenv"
)

// NetnsDir is where iproute2 keeps named network namespaces.
const NetnsDir = "/run/netns"

// The lab's fixed addressing. Each lab lives in its own namespaces, so every
// lab uses the same addresses.
var (
	Net4        = netip.MustParsePrefix("10.77.1.0/24")
	Net6        = netip.MustParsePrefix("fd00:77:1::/64")
	OutsideNet4 = netip.MustParsePrefix("10.77.2.0/24")
	OutsideNet6 = netip.MustParsePrefix("fd00:77:2::/64")

	Host4        = netip.MustParseAddr("10.77.1.1")
	Peer4        = netip.MustParseAddr("10.77.1.2")
	PeerOutside4 = netip.MustParseAddr("10.77.2.2")
	Host6        = netip.MustParseAddr("fd00:77:1::1")
	Peer6        = netip.MustParseAddr("fd00:77:1::2")
	PeerOutside6 = netip.MustParseAddr("fd00:77:2::2")
)

// settleTimeout bounds the wait for links to come up and IPv6 addresses to
// leave the tentative state.
const settleTimeout = 10 * time.Second

// Lab is a host and a peer network namespace joined by a veth pair.
type Lab struct {
	// HostNS and PeerNS are the namespace names (as in `ip netns list`);
	// HostNSPath and PeerNSPath are their files under /run/netns, for
	// setns(2) or `nsenter --net=`.
	HostNS, PeerNS         string
	HostNSPath, PeerNSPath string

	// HostIf is the host end of the veth, in HostNS, with its ifindex there.
	// PeerIf is the other end, in PeerNS.
	HostIf      string
	HostIfIndex int
	PeerIf      string
	PeerIfIndex int

	// Addresses; see the package documentation for the picture. The
	// PeerOutside addresses sit on the peer's veth but outside the host's
	// subnets; the host routes OutsideNet4/OutsideNet6 via Peer4/Peer6.
	Host4, Peer4, PeerOutside4 netip.Addr
	Host6, Peer6, PeerOutside6 netip.Addr

	// Net4, Net6 are the subnets of the veth; OutsideNet4, OutsideNet6 the
	// subnets of the PeerOutside addresses.
	Net4, Net6, OutsideNet4, OutsideNet6 netip.Prefix

	mu      sync.Mutex
	closers []io.Closer // echo servers, closed before the namespaces go
}

// New builds a lab and registers its removal with t.Cleanup. It skips or
// fails t (see package testenv) when not root, and fails t, with the
// command's output, when any step fails.
func New(t testing.TB) *Lab {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("lab needs %s (Debian packages iproute2, util-linux; see `make deps`): %v", tool, err)
		}
	}

	id := randomHex(t, 3)
	l := &Lab{
		HostNS: "pcs" + id + "h",
		PeerNS: "pcs" + id + "p",
		HostIf: "vh" + id,
		PeerIf: "vp" + id,

		Host4: Host4, Peer4: Peer4, PeerOutside4: PeerOutside4,
		Host6: Host6, Peer6: Peer6, PeerOutside6: PeerOutside6,
		Net4: Net4, Net6: Net6, OutsideNet4: OutsideNet4, OutsideNet6: OutsideNet6,
	}
	l.HostNSPath = NetnsDir + "/" + l.HostNS
	l.PeerNSPath = NetnsDir + "/" + l.PeerNS

	// The cleanup is registered before the first namespace exists, so a
	// lab that fails half-way is removed too.
	t.Cleanup(func() { l.remove(t) })

	addNetns(t, l.HostNS)
	addNetns(t, l.PeerNS)

	h, p := l.HostNS, l.PeerNS
	steps := [][]string{
		{"-n", h, "link", "add", l.HostIf, "type", "veth", "peer", "name", l.PeerIf, "netns", p},
		{"-n", h, "link", "set", "lo", "up"},
		{"-n", p, "link", "set", "lo", "up"},
		{"-n", h, "addr", "add", prefixOf(Host4, Net4), "dev", l.HostIf},
		{"-n", h, "addr", "add", prefixOf(Host6, Net6), "dev", l.HostIf, "nodad"},
		{"-n", p, "addr", "add", prefixOf(Peer4, Net4), "dev", l.PeerIf},
		{"-n", p, "addr", "add", prefixOf(PeerOutside4, OutsideNet4), "dev", l.PeerIf},
		{"-n", p, "addr", "add", prefixOf(Peer6, Net6), "dev", l.PeerIf, "nodad"},
		{"-n", p, "addr", "add", prefixOf(PeerOutside6, OutsideNet6), "dev", l.PeerIf, "nodad"},
		{"-n", h, "link", "set", l.HostIf, "up"},
		{"-n", p, "link", "set", l.PeerIf, "up"},
		{"-n", h, "route", "add", OutsideNet4.String(), "via", Peer4.String(), "dev", l.HostIf},
		{"-n", h, "-6", "route", "add", OutsideNet6.String(), "via", Peer6.String(), "dev", l.HostIf},
	}
	for _, args := range steps {
		if out, err := run("ip", args...); err != nil {
			t.Fatalf("lab: %v", describe("ip", args, out, err))
		}
	}

	l.waitReady(t, l.HostNS, l.HostIf, Host6)
	l.waitReady(t, l.PeerNS, l.PeerIf, Peer6, PeerOutside6)

	var err error
	if l.HostIfIndex, err = l.ifindex(l.HostNS, l.HostIf); err != nil {
		t.Fatalf("lab: %v", err)
	}
	if l.PeerIfIndex, err = l.ifindex(l.PeerNS, l.PeerIf); err != nil {
		t.Fatalf("lab: %v", err)
	}
	return l
}

// waitReady waits until ifname in ns is operationally up and none of addrs
// is tentative. nodad makes the addresses usable at once, but the link's
// carrier reaches the IPv6 stack asynchronously.
func (l *Lab) waitReady(t testing.TB, ns, ifname string, addrs ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for {
		up, upOut, err := linkUp(ns, ifname)
		if err != nil {
			t.Fatalf("lab: %v", err)
		}
		args := []string{"-n", ns, "-6", "-o", "addr", "show", "dev", ifname, "tentative"}
		tent, err := run("ip", args...)
		if err != nil {
			t.Fatalf("lab: %v", describe("ip", args, tent, err))
		}
		pending := tentative(tent, addrs)
		if up && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab: %s in %s not ready after %v (up=%v, tentative=%v):\n%s%s",
				ifname, ns, settleTimeout, up, pending, upOut, tent)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func linkUp(ns, ifname string) (bool, []byte, error) {
	args := []string{"-n", ns, "-o", "link", "show", "dev", ifname}
	out, err := run("ip", args...)
	if err != nil {
		return false, out, describe("ip", args, out, err)
	}
	return bytes.Contains(out, []byte("state UP")), out, nil
}

// tentative returns the addrs that appear in the output of
// `ip -o addr show tentative`.
func tentative(out []byte, addrs []netip.Addr) []netip.Addr {
	var pending []netip.Addr
	for _, line := range strings.Split(string(out), "\n") {
		for _, a := range addrs {
			if strings.Contains(line, " "+a.String()+"/") {
				pending = append(pending, a)
			}
		}
	}
	return pending
}

func (l *Lab) ifindex(ns, ifname string) (int, error) {
	var index int
	err := l.Do(ns, func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		index = ifc.Index
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ifindex of %s in %s: %w", ifname, ns, err)
	}
	return index, nil
}

// remove closes the lab's echo servers (their sockets hold the namespaces)
// and deletes both namespaces, which destroys the veth pair with them.
func (l *Lab) remove(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i].Close()
	}
	for _, ns := range []string{l.PeerNS, l.HostNS} {
		if _, err := os.Lstat(NetnsDir + "/" + ns); os.IsNotExist(err) {
			continue
		}
		args := []string{"netns", "delete", ns}
		if out, err := run("ip", args...); err != nil {
			t.Errorf("lab cleanup: %v", describe("ip", args, out, err))
		}
	}
}

func (l *Lab) track(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, c)
}

// addNetns runs `ip netns add`. The first `ip netns add` after boot turns
// /run/netns into a shared mount; two of them racing can stack two mounts
// there and hide a namespace made on the lower one, so every lab serialises
// on a lock taken on /run (shared by test binaries run in parallel).
func addNetns(t testing.TB, name string) {
	t.Helper()
	unlock, err := lockRun()
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	defer unlock()
	args := []string{"netns", "add", name}
	if out, err := run("ip", args...); err != nil {
		t.Fatalf("lab: %v", describe("ip", args, out, err))
	}
}

func lockRun() (unlock func(), err error) {
	fd, err := unix.Open("/run", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /run for locking: %w", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock /run: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// Command returns a command that runs name inside the namespace ns (a name
// under /run/netns or a path) with `nsenter --net=PATH --`. Unlike
// `ip netns exec`, nsenter does not remount /sys, so /sys/fs/bpf stays
// visible to the program.
func (l *Lab) Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + nsPath(ns), "--", name}, args...)...)
}

func nsPath(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return NetnsDir + "/" + ns
}

func prefixOf(a netip.Addr, p netip.Prefix) string {
	return netip.PrefixFrom(a, p.Bits()).String()
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("lab: random name: %v", err)
	}
	return hex.EncodeToString(b)
}

func run(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func describe(name string, args []string, out []byte, err error) error {
	return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
}
