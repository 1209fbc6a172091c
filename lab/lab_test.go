package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/testenv"
)

// dropTimeout keeps the tests that expect silence short: on a veth an
// answer takes microseconds.
const dropTimeout = 500 * time.Millisecond

func listen(t *testing.T, l *Lab, ns string, addr netip.Addr) netip.AddrPort {
	t.Helper()
	ln, err := l.ListenTCP(ns, netip.AddrPortFrom(addr, 0))
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddrPort(ln.Addr().String())
}

func serveUDP(t *testing.T, l *Lab, ns string, addr netip.Addr) netip.AddrPort {
	t.Helper()
	pc, err := l.ServeUDPEcho(ns, netip.AddrPortFrom(addr, 0))
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// boundPort returns a TCP port on addr in ns that is bound but not
// listening, held until the test ends, so a SYN to it is answered by a RST.
// Listening and then closing is not enough: a child forked by a parallel
// test holds a copy of the listener's fd until it execs, and a SYN arriving
// in that window completes a handshake that the close then resets.
func boundPort(t *testing.T, l *Lab, ns string, addr netip.Addr) netip.AddrPort {
	t.Helper()
	var port netip.AddrPort
	err := l.Do(ns, func() error {
		family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Addr: addr.As16()})
		if addr.Is4() {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: addr.As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(fd) })
		if err := unix.Bind(fd, sa); err != nil {
			return err
		}
		got, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		switch got := got.(type) {
		case *unix.SockaddrInet4:
			port = netip.AddrPortFrom(addr, uint16(got.Port))
		case *unix.SockaddrInet6:
			port = netip.AddrPortFrom(addr, uint16(got.Port))
		}
		return nil
	})
	if err != nil || !port.IsValid() {
		t.Fatalf("binding a TCP port on %v in %s: %v", addr, ns, err)
	}
	return port
}

// flows lists every direction the lab offers, for both families.
func flows(l *Lab) []struct {
	name          string
	fromNS, toNS  string
	local, server netip.Addr
} {
	return []struct {
		name          string
		fromNS, toNS  string
		local, server netip.Addr
	}{
		{"v4 host to peer", l.HostNS, l.PeerNS, netip.Addr{}, l.Peer4},
		{"v4 peer to host", l.PeerNS, l.HostNS, netip.Addr{}, l.Host4},
		{"v4 host to peer outside address", l.HostNS, l.PeerNS, netip.Addr{}, l.PeerOutside4},
		{"v4 peer outside address to host", l.PeerNS, l.HostNS, l.PeerOutside4, l.Host4},
		{"v6 host to peer", l.HostNS, l.PeerNS, netip.Addr{}, l.Peer6},
		{"v6 peer to host", l.PeerNS, l.HostNS, netip.Addr{}, l.Host6},
		{"v6 host to peer outside address", l.HostNS, l.PeerNS, netip.Addr{}, l.PeerOutside6},
		{"v6 peer outside address to host", l.PeerNS, l.HostNS, l.PeerOutside6, l.Host6},
	}
}

func TestTCPEchoCrossesTheVethBothWays(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, f := range flows(l) {
		t.Run(f.name, func(t *testing.T) {
			srv := listen(t, l, f.toNS, f.server)
			if err := l.DialTCP(f.fromNS, f.local, srv, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestUDPEchoCrossesTheVethBothWays(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, f := range flows(l) {
		t.Run(f.name, func(t *testing.T) {
			srv := serveUDP(t, l, f.toNS, f.server)
			if err := l.UDPExchange(f.fromNS, f.local, srv, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestHostSeesOutsideAddressAsSource(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, src := range []netip.Addr{l.PeerOutside4, l.PeerOutside6} {
		dst := l.Host4
		if src.Is6() {
			dst = l.Host6
		}
		var ln net.Listener
		err := l.Do(l.HostNS, func() (err error) {
			ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 0).String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan netip.Addr, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- netip.Addr{}
				return
			}
			c.Close()
			got <- netip.MustParseAddrPort(c.RemoteAddr().String()).Addr()
		}()
		var c net.Conn
		err = l.Do(l.PeerNS, func() (err error) {
			d := net.Dialer{Timeout: DefaultTimeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
			c, err = d.Dial("tcp", ln.Addr().String())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if a := <-got; a != src {
			t.Errorf("host accepted a connection from %v, want %v", a, src)
		}
	}
}

func TestClosedPortIsRefusedNotTimedOut(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, f := range flows(l) {
		t.Run(f.name, func(t *testing.T) {
			closed := boundPort(t, l, f.toNS, f.server)
			err := l.DialTCP(f.fromNS, f.local, closed, dropTimeout)
			if !errors.Is(err, ErrRefused) || errors.Is(err, ErrTimeout) {
				t.Errorf("tcp dial to closed port: %v; want ErrRefused only", err)
			}
			err = l.UDPExchange(f.fromNS, f.local, closed, dropTimeout)
			if !errors.Is(err, ErrRefused) || errors.Is(err, ErrTimeout) {
				t.Errorf("udp exchange with closed port: %v; want ErrRefused only", err)
			}
		})
	}
}

// A blackhole route in the peer for the host's address swallows the peer's
// answers without any ICMP: exactly what a dropped packet looks like to the
// dialer.
func TestUnansweredDialReportsTimedOut(t *testing.T) {
	t.Parallel()
	l := New(t)
	for _, c := range []struct{ host, peer netip.Addr }{
		{l.Host4, l.Peer4},
		{l.Host6, l.Peer6},
	} {
		t.Run(c.peer.String(), func(t *testing.T) {
			tcp := listen(t, l, l.PeerNS, c.peer)
			udp := serveUDP(t, l, l.PeerNS, c.peer)
			if err := l.DialTCP(l.HostNS, netip.Addr{}, tcp, 0); err != nil {
				t.Fatalf("before the blackhole: %v", err)
			}
			if err := l.UDPExchange(l.HostNS, netip.Addr{}, udp, 0); err != nil {
				t.Fatalf("before the blackhole: %v", err)
			}

			hole := netip.PrefixFrom(c.host, c.host.BitLen()).String()
			if out, err := l.Command(l.PeerNS, "ip", "route", "add", "blackhole", hole).CombinedOutput(); err != nil {
				t.Fatalf("ip route add blackhole %s: %v\n%s", hole, err, out)
			}

			start := time.Now()
			err := l.DialTCP(l.HostNS, netip.Addr{}, tcp, dropTimeout)
			if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrRefused) {
				t.Errorf("tcp dial with answers blackholed: %v; want ErrTimeout only", err)
			} else if !strings.Contains(err.Error(), "timed out") {
				t.Errorf("tcp dial error %q does not say it timed out", err)
			}
			if d := time.Since(start); d > dropTimeout+time.Second {
				t.Errorf("tcp dial took %v with a %v timeout", d, dropTimeout)
			}
			err = l.UDPExchange(l.HostNS, netip.Addr{}, udp, dropTimeout)
			if !errors.Is(err, ErrTimeout) || errors.Is(err, ErrRefused) {
				t.Errorf("udp exchange with answers blackholed: %v; want ErrTimeout only", err)
			}
		})
	}
}

func TestLabExposesInterfaceAndPaths(t *testing.T) {
	t.Parallel()
	l := New(t)
	if len(l.HostIf) > 15 || len(l.PeerIf) > 15 {
		t.Errorf("interface names %q, %q longer than 15 bytes", l.HostIf, l.PeerIf)
	}
	if l.HostNSPath != "/run/netns/"+l.HostNS || l.PeerNSPath != "/run/netns/"+l.PeerNS {
		t.Errorf("namespace paths %q, %q do not match names %q, %q", l.HostNSPath, l.PeerNSPath, l.HostNS, l.PeerNS)
	}
	out, err := l.Command(l.HostNS, "ip", "-o", "addr", "show", "dev", l.HostIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in host ns: %v\n%s", err, out)
	}
	for _, want := range []string{
		fmt.Sprintf("%d: %s", l.HostIfIndex, l.HostIf),
		" 10.77.1.1/24 ",
		" fd00:77:1::1/64 ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ip addr show dev %s in host ns lacks %q:\n%s", l.HostIf, want, out)
		}
	}
	out, err = l.Command(l.PeerNS, "ip", "-o", "addr", "show", "dev", l.PeerIf).CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in peer ns: %v\n%s", err, out)
	}
	for _, want := range []string{" 10.77.1.2/24 ", " 10.77.2.2/24 ", " fd00:77:1::2/64 ", " fd00:77:2::2/64 "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ip addr show dev %s in peer ns lacks %q:\n%s", l.PeerIf, want, out)
		}
	}
}

// nsenter --net must leave the mounts alone, unlike `ip netns exec`, which
// remounts /sys in a mount namespace of its own and so hides /sys/fs/bpf.
func TestCommandKeepsTheMountNamespace(t *testing.T) {
	t.Parallel()
	l := New(t)
	mnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	out, err := l.Command(l.HostNS, "readlink", "/proc/self/ns/mnt").CombinedOutput()
	if err != nil {
		t.Fatalf("readlink in host ns: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != mnt {
		t.Errorf("a command in the lab runs in mount namespace %s, want the caller's %s", got, mnt)
	}

	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		t.Logf("/sys/fs/bpf is not a BPF filesystem here; not checking it from inside the lab")
		return
	}
	out, err = l.Command(l.HostNS, "stat", "-f", "-c", "%T", "/sys/fs/bpf").CombinedOutput()
	if err != nil {
		t.Fatalf("stat -f /sys/fs/bpf in host ns: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "bpf_fs" {
		t.Errorf("inside the lab /sys/fs/bpf is %q, want bpf_fs", got)
	}
}

func TestDoSwitchesOnlyItsOwnThread(t *testing.T) {
	t.Parallel()
	l := New(t)
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, ns := range []string{l.HostNS, l.PeerNS} {
		var st unix.Stat_t
		if err := unix.Stat(NetnsDir+"/"+ns, &st); err != nil {
			t.Fatal(err)
		}
		want[ns] = fmt.Sprintf("net:[%d]", st.Ino)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 100 {
		ns := l.HostNS
		if i%2 == 1 {
			ns = l.PeerNS
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs <- l.Do(ns, func() error {
				got, err := os.Readlink("/proc/thread-self/ns/net")
				if err == nil && got != want[ns] {
					err = fmt.Errorf("inside Do(%s) the thread is in %s, want %s", ns, got, want[ns])
				}
				return err
			})
		}()
		go func() {
			defer wg.Done()
			got, err := os.Readlink("/proc/thread-self/ns/net")
			if err == nil && got != self {
				err = fmt.Errorf("a goroutine outside Do runs in %s, want %s", got, self)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestDoReraisesPanicAfterLeaving(t *testing.T) {
	t.Parallel()
	l := New(t)
	defer func() {
		if r := recover(); r != "boom" {
			t.Errorf("recovered %v, want boom", r)
		}
	}()
	l.Do(l.HostNS, func() error { panic("boom") })
}

func TestCleanupRemovesNamespacesAndVeth(t *testing.T) {
	testenv.RequireRoot(t)
	var (
		l       *Lab
		inodes  []string
		servers []closeReporter
	)
	t.Run("lab", func(t *testing.T) {
		l = New(t)
		for _, ns := range []string{l.HostNS, l.PeerNS} {
			var st unix.Stat_t
			if err := unix.Stat(NetnsDir+"/"+ns, &st); err != nil {
				t.Fatal(err)
			}
			inodes = append(inodes, fmt.Sprintf("net:[%d]", st.Ino))
		}
		// Left open on purpose: the lab must close them, or their sockets
		// would keep the namespaces alive after `ip netns delete`.
		ln, err := l.ListenTCP(l.HostNS, netip.AddrPortFrom(l.Host4, 0))
		if err != nil {
			t.Fatal(err)
		}
		pc, err := l.ServeUDPEcho(l.PeerNS, netip.AddrPortFrom(l.Peer6, 0))
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, ln.(closeReporter), pc.(closeReporter))
	})
	if l == nil {
		t.Fatal("lab was not built")
	}

	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, ns := range []string{l.HostNS, l.PeerNS} {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s still listed after cleanup:\n%s", ns, out)
		}
		if _, err := os.Lstat(NetnsDir + "/" + ns); !os.IsNotExist(err) {
			t.Errorf("%s/%s still exists after cleanup (%v)", NetnsDir, ns, err)
		}
	}
	out, err = exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link: %v\n%s", err, out)
	}
	for _, ifname := range []string{l.HostIf, l.PeerIf} {
		if strings.Contains(string(out), ifname) {
			t.Errorf("link %s still present after cleanup:\n%s", ifname, out)
		}
	}
	for _, s := range servers {
		if !s.isClosed() {
			t.Errorf("echo server on %v still open after cleanup", s)
		}
	}
	// Nothing may hold the namespaces: no thread in them, no mount of them.
	// With that and the sockets closed, the kernel destroys them and the
	// veth pair with them.
	holders, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, h := range holders {
		if target, err := os.Readlink(h); err == nil {
			for _, ino := range inodes {
				if target == ino {
					t.Errorf("%s is still in lab namespace %s", h, ino)
				}
			}
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, ino := range inodes {
		if strings.Contains(string(mounts), ino) {
			t.Errorf("lab namespace %s is still mounted", ino)
		}
	}
}

// closeReporter lets the cleanup test see that the lab closed its echo
// servers.
type closeReporter interface{ isClosed() bool }

func (e *echoListener) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

func (e *udpEcho) isClosed() bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}

func TestServiceAccountIsCreatedAndRemoved(t *testing.T) {
	testenv.RequireRoot(t)
	var user, group string
	t.Run("account", func(t *testing.T) {
		user, group = ServiceAccount(t)
		if len(user) > 32 {
			t.Errorf("user name %q longer than 32", user)
		}
		out, err := exec.Command("id", "-gn", user).CombinedOutput()
		if err != nil {
			t.Fatalf("id -gn %s: %v\n%s", user, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != group {
			t.Errorf("primary group of %s is %q, want %q", user, got, group)
		}
		out, err = exec.Command("getent", "passwd", user).CombinedOutput()
		if err != nil {
			t.Fatalf("getent passwd %s: %v\n%s", user, err, out)
		}
		if !strings.HasSuffix(strings.TrimSpace(string(out)), ":/usr/sbin/nologin") {
			t.Errorf("%s has a login shell: %s", user, out)
		}
		var uid int
		fmt.Sscanf(strings.Split(string(out), ":")[2], "%d", &uid)
		if uid == 0 || uid >= 1000 {
			t.Errorf("%s has uid %d, want a system uid", user, uid)
		}
	})
	if user == "" {
		t.Fatal("no account was created")
	}
	if exists("passwd", user) {
		t.Errorf("user %s still exists after cleanup", user)
	}
	if exists("group", group) {
		t.Errorf("group %s still exists after cleanup", group)
	}
}

// rxPackets reads the received-packets counter of ifname in ns.
func rxPackets(t *testing.T, ns, ifname string) uint64 {
	t.Helper()
	args := []string{"-n", ns, "-j", "-s", "link", "show", "dev", ifname}
	out, err := run("ip", args...)
	if err != nil {
		t.Fatal(describe("ip", args, out, err))
	}
	var links []struct {
		Stats struct {
			Rx struct {
				Packets uint64 `json:"packets"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("parse %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return links[0].Stats.Rx.Packets
}

func TestVLANsCarryTaggedTrafficOverTheVeth(t *testing.T) {
	t.Parallel()
	l := New(t)
	vlans := []struct {
		name string
		v    *VLAN
	}{
		{"802.1Q", l.AddVLAN(t, 10)},
		{"802.1ad outer, 802.1Q inner", l.AddQinQ(t, 20, 30)},
	}
	if got := vlans[0].v; got.Host4 != netip.MustParseAddr("10.77.110.1") || got.Peer6 != netip.MustParseAddr("fd00:77:110::2") ||
		got.HostIf != l.HostIf+".10" {
		t.Errorf("VLAN 10: %v %v on %s", got.Host4, got.Peer6, got.HostIf)
	}
	if got := vlans[1].v; got.Net4 != netip.MustParsePrefix("10.78.30.0/24") || got.PeerIf != l.PeerIf+"q30" ||
		!slices.Equal(got.IDs, []int{20, 30}) || !slices.Equal(got.Protos, []uint16{TagAD, TagQ}) {
		t.Errorf("QinQ 20/30: %+v", got)
	}
	for _, vl := range vlans {
		t.Run(vl.name, func(t *testing.T) {
			v := vl.v
			for _, a := range []struct {
				ns, ifname string
				addr       netip.Addr
			}{{l.HostNS, v.HostIf, v.Host4}, {l.HostNS, v.HostIf, v.Host6}, {l.PeerNS, v.PeerIf, v.Peer4}, {l.PeerNS, v.PeerIf, v.Peer6}} {
				out, err := run("ip", "-n", a.ns, "-o", "addr", "show", "dev", a.ifname)
				if err != nil || !strings.Contains(string(out), " "+a.addr.String()+"/") {
					t.Errorf("%s in %s lacks %v: %v\n%s", a.ifname, a.ns, a.addr, err, out)
				}
			}
			for _, f := range []struct {
				name         string
				fromNS, toNS string
				server       netip.Addr
				rxNS, rxIf   string
			}{
				{"v4 peer to host", l.PeerNS, l.HostNS, v.Host4, l.HostNS, v.HostIf},
				{"v6 peer to host", l.PeerNS, l.HostNS, v.Host6, l.HostNS, v.HostIf},
				{"v4 host to peer", l.HostNS, l.PeerNS, v.Peer4, l.PeerNS, v.PeerIf},
				{"v6 host to peer", l.HostNS, l.PeerNS, v.Peer6, l.PeerNS, v.PeerIf},
			} {
				t.Run(f.name, func(t *testing.T) {
					srv := listen(t, l, f.toNS, f.server)
					before := rxPackets(t, f.rxNS, f.rxIf)
					if err := l.DialTCP(f.fromNS, netip.Addr{}, srv, 0); err != nil {
						t.Fatal(err)
					}
					// A sub-interface receives only what came over the
					// veth carrying exactly its tags.
					if after := rxPackets(t, f.rxNS, f.rxIf); after <= before {
						t.Errorf("%s received %d packets before and %d after", f.rxIf, before, after)
					}
				})
			}
		})
	}
}
