package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/pins"
)

// prober dials, over and over until ended, a port labPolicy denies (22)
// and one it allows (443) from the peer: a denied dial that connects, or
// an allowed one that does not, is a gap.
type prober struct {
	stop, done      chan struct{}
	mu              sync.Mutex
	leaked, failed  []string
	rounds          int
	denied, allowed netip.AddrPort
}

func startProber(t *testing.T, l *lab.Lab) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{}),
		denied: ap(l.Host4, 22), allowed: ap(l.Host4, 443)}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			err := l.DialTCP(l.PeerNS, l.Peer4, p.denied, 300*time.Millisecond)
			p.mu.Lock()
			if err == nil {
				p.leaked = append(p.leaked, time.Now().Format(time.StampMilli))
			}
			p.mu.Unlock()
			err = l.DialTCP(l.PeerNS, l.Peer4, p.allowed, 2*time.Second)
			p.mu.Lock()
			if err != nil {
				p.failed = append(p.failed, time.Now().Format(time.StampMilli)+": "+err.Error())
			}
			p.rounds++
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *prober) end(t *testing.T) {
	t.Helper()
	close(p.stop)
	<-p.done
	if len(p.leaked) > 0 {
		t.Errorf("denied TCP %v connected %d times: %v", p.denied, len(p.leaked), p.leaked)
	}
	if len(p.failed) > 0 {
		t.Errorf("allowed TCP %v failed %d times: %v", p.allowed, len(p.failed), p.failed)
	}
	if p.rounds < 3 {
		t.Errorf("the prober ran %d rounds; too few to show anything", p.rounds)
	}
}

// pinnedLinks returns the link and program ids of the links pinned for
// e, by pin name.
func pinnedLinks(t *testing.T, e *enforcer) map[string][2]uint32 {
	t.Helper()
	return pinnedLinksIn(t, pins.LayoutDir(e.pinDir))
}

// pinnedLinksIn is pinnedLinks for the layout directory dir.
func pinnedLinksIn(t *testing.T, dir string) map[string][2]uint32 {
	t.Helper()
	out := map[string][2]uint32{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if !strings.HasPrefix(en.Name(), "link_") {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, en.Name()), nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[en.Name()] = [2]uint32{uint32(info.ID), uint32(info.Program)}
	}
	if len(out) < 2 {
		t.Fatalf("pinned links %v, want ingress and egress at least", out)
	}
	return out
}

// sameLinksNewPrograms checks that the links are the ones attached before
// (never detached) and carry other programs (swapped in place).
func sameLinksNewPrograms(t *testing.T, before, after map[string][2]uint32) {
	t.Helper()
	for name, b := range before {
		a := after[name]
		if a[0] != b[0] {
			t.Errorf("%s: link %d replaced by link %d; want the same link, never detached", name, b[0], a[0])
		}
		if a[1] == b[1] {
			t.Errorf("%s: still program %d; want this instance's program swapped in", name, b[1])
		}
	}
}

// A loader that stops and starts again adopts its pins: the same links,
// new programs swapped in place, the policy in force and connection
// tracking carried on; at no moment does denied traffic pass or allowed
// traffic fail.
func TestRestartAdoptsThePinsWithoutAGap(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	first := startEnforcing(t, l, dir, enforceOpts{})
	before := pinnedLinks(t, first)

	p := startProber(t, l)
	time.Sleep(500 * time.Millisecond)
	first.cmd.Process.Signal(syscall.SIGTERM)
	if err := first.wait(t); err != nil {
		t.Fatalf("first enforce: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // no loader at all for a while
	second := startEnforcing(t, l, dir, enforceOpts{pinDir: first.pinDir})
	time.Sleep(500 * time.Millisecond)
	p.end(t)

	out := second.out.String()
	for _, want := range []string{"adopting the pins in place", "policy applied by worker: generation=2"} {
		if !strings.Contains(out, want) {
			t.Errorf("second enforce output lacks %q:\n%s", want, out)
		}
	}
	sameLinksNewPrograms(t, before, pinnedLinks(t, second))
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 1 {
		t.Errorf("%d ingress and %d egress programs attached, want one each", in, eg)
	}
}

// Of two enforce on one pin directory, the second refuses to start unless
// told to replace the first, which it then does under traffic: an
// established connection both allow carries on, and denied traffic never
// passes.
func TestSecondEnforceReplacesOnlyWhenAsked(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	first := startEnforcing(t, l, dir, enforceOpts{})
	before := pinnedLinks(t, first)

	refused := newEnforcer(t, l, dir, enforceOpts{pinDir: first.pinDir})
	refused.start(t)
	var ee interface{ ExitCode() int }
	if err := refused.wait(t); !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("a second enforce without --replace: %v, want it refused", err)
	}
	for _, want := range []string{"holds the pin directory", "--replace"} {
		if !strings.Contains(refused.out.String(), want) {
			t.Errorf("refusal lacks %q:\n%s", want, refused.out.String())
		}
	}
	if err := syscall.Kill(first.cmd.Process.Pid, 0); err != nil {
		t.Fatalf("the first enforce is gone after a refused second: %v", err)
	}

	c := establish(t, l, 443)
	p := startProber(t, l)
	time.Sleep(500 * time.Millisecond)
	second := startEnforcing(t, l, dir, enforceOpts{pinDir: first.pinDir, args: []string{"--replace"}})
	if err := first.wait(t); err != nil {
		t.Errorf("the replaced enforce: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	p.end(t)
	if err := echo(c, 3*time.Second); err != nil {
		t.Errorf("an established connection did not survive the replacement: %v", err)
	}
	if !strings.Contains(second.out.String(), "replacing the running instance") {
		t.Errorf("the replacement does not say what it replaced:\n%s", second.out.String())
	}
	sameLinksNewPrograms(t, before, pinnedLinks(t, second))
}

// oldLayoutPins makes what an older build would have left: a layout
// directory v1 with a link on the lab's host interface, ingress, running
// a program that passes everything, and a map.
func oldLayoutPins(t *testing.T, l *lab.Lab, pinDir string) (linkID uint32) {
	t.Helper()
	dir := filepath.Join(pinDir, "v1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "old_build", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var lk link.Link
	err = l.Do(l.HostNS, func() (err error) {
		lk, err = link.AttachTCX(link.TCXOptions{Interface: l.HostIfIndex, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if err := lk.Pin(filepath.Join(dir, pins.LinkName(l.HostIfIndex, "ingress"))); err != nil {
		t.Fatal(err)
	}
	// And one on the namespace's loopback, which the new --interface
	// does not name: replacing the layout must not detach it.
	var lo link.Link
	err = l.Do(l.HostNS, func() (err error) {
		lo, err = link.AttachTCX(link.TCXOptions{Interface: 1, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	if err := lo.Pin(filepath.Join(dir, pins.LinkName(1, "ingress"))); err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "selector", Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Pin(filepath.Join(dir, "selector")); err != nil {
		t.Fatal(err)
	}
	info, err := lk.Info()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.ID)
}

// Pins of another layout are never reused as they are: without --replace,
// a clear error and nothing touched; with it, this build's program is
// swapped onto the old link in place and the old pins go.
func TestPinsOfAnotherLayoutNeedReplace(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	refused := newEnforcer(t, l, dir, enforceOpts{})
	oldLink := oldLayoutPins(t, l, refused.pinDir)
	failsToStartLeaving(t, refused, "layout v1", "--replace")
	if left := pinsLeft(t, refused.pinDir); len(left) != 5 { // the directory, v1, its two links and its map
		t.Errorf("a refused start changed the pins: %v", left)
	}
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 0 {
		t.Errorf("%d ingress and %d egress programs after a refused start, want the old one alone", in, eg)
	}

	e := startEnforcing(t, l, dir, enforceOpts{pinDir: refused.pinDir, args: []string{"--replace"}})
	if _, err := os.Stat(filepath.Join(e.pinDir, "v1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old layout's directory is still there (%v)", err)
	}
	now := pinnedLinks(t, e)
	ingress := now[pins.LinkName(l.HostIfIndex, "ingress")]
	if ingress[0] != oldLink {
		t.Errorf("ingress link %d, want the old build's link %d with the program swapped", ingress[0], oldLink)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(ingress[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if info, err := prog.Info(); err != nil || info.Name != bpf.DatapathProgPciIngress {
		t.Errorf("the old link runs %+v (%v), want %s", info, err, bpf.DatapathProgPciIngress)
	}
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 1 {
		t.Errorf("%d ingress and %d egress programs attached, want one each", in, eg)
	}
	err = l.Do(l.HostNS, func() error {
		res, err := link.QueryPrograms(link.QueryOptions{Target: 1, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		if len(res.Programs) != 1 {
			t.Errorf("loopback ingress has %d programs after the replacement, want the old link kept", len(res.Programs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
}

// failsToStartLeaving is failsToStart for a start that must leave the pins
// it found alone.
func failsToStartLeaving(t *testing.T, e *enforcer, wantOutput ...string) {
	t.Helper()
	e.start(t)
	var ee interface{ ExitCode() int }
	if err := e.wait(t); !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("enforce exit: %v, want a non-zero status\n%s", err, e.out.String())
	}
	for _, w := range wantOutput {
		if !strings.Contains(e.out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, e.out.String())
		}
	}
}

// A loader killed during start-up, after pinning a map but before any
// link, leaves pins nothing enforces from: the next start removes them,
// and no "file exists" stops it.
func TestPinsOfAnInterruptedStartAreCleanedUp(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := newEnforcer(t, l, dir, enforceOpts{})
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pins.LayoutDir(e.pinDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := objs.Addr4.Pin(filepath.Join(pins.LayoutDir(e.pinDir), bpf.DatapathMapAddr4)); err != nil {
		t.Fatal(err)
	}
	objs.Close()
	e.start(t)
	e.waitEnforcing(t)
	if !strings.Contains(e.out.String(), "removing the pins of an interrupted start") {
		t.Errorf("output does not say it removed the stale pins:\n%s", e.out.String())
	}
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
}

// Both processes killed under traffic: the pinned links go on deciding,
// and the next start adopts them.
func TestKillingBothProcessesOpensNoGap(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	first := startEnforcing(t, l, dir, enforceOpts{})
	before := pinnedLinks(t, first)
	loader, worker := first.pids(t)

	p := startProber(t, l)
	time.Sleep(300 * time.Millisecond)
	syscall.Kill(worker, syscall.SIGKILL)
	syscall.Kill(loader, syscall.SIGKILL)
	first.wait(t)
	time.Sleep(time.Second)
	second := startEnforcing(t, l, dir, enforceOpts{pinDir: first.pinDir})
	time.Sleep(300 * time.Millisecond)
	p.end(t)
	if !strings.Contains(second.out.String(), "adopting the pins in place") {
		t.Errorf("the next start did not adopt:\n%s", second.out.String())
	}
	sameLinksNewPrograms(t, before, pinnedLinks(t, second))
}

// A loader killed at any moment of its start-up, here as soon as its first
// pin appears, leaves nothing the next start trips over: it adopts or
// cleans up, and never fails on a pin that exists.
func TestLoaderKilledDuringStartUpLeavesAStartableState(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	first := newEnforcer(t, l, dir, enforceOpts{})
	first.start(t)
	layout := pins.LayoutDir(first.pinDir)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		if entries, _ := os.ReadDir(layout); len(entries) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pin appeared:\n%s", first.out.String())
		}
	}
	first.cmd.Process.Kill()
	first.wait(t)
	left, _ := os.ReadDir(layout)
	t.Logf("killed with %d pins in place", len(left))

	second := startEnforcing(t, l, dir, enforceOpts{pinDir: first.pinDir})
	if strings.Contains(second.out.String(), "file exists") {
		t.Errorf("the next start tripped over a pin:\n%s", second.out.String())
	}
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 1 {
		t.Errorf("%d ingress and %d egress programs attached, want one each", in, eg)
	}
}

// A worker killed in the middle of a reload leaves the policy in force
// whole; its replacement applies what is on disk.
func TestWorkerKilledDuringAReload(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22), ap(netip.IPv6Unspecified(), 8443))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{})
	_, worker := e.pids(t)

	p := startProber(t, l)
	// v2 keeps 443 open to the peer and adds 8443, so the prober's
	// expectations hold under both versions.
	both := strings.Replace(labPolicy, "- {protocol: TCP, port: 443}\n  egress", "- {protocol: TCP, port: 443}\n        - {protocol: TCP, port: 8443}\n  egress", 1)
	if err := os.WriteFile(filepath.Join(dir, "cde.yaml"), []byte(both), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(time.Millisecond)
	syscall.Kill(worker, syscall.SIGKILL)
	e.waitLog(t, "worker replaced", 1)
	e.waitLog(t, "policy applied by worker", 2)
	time.Sleep(300 * time.Millisecond)
	p.end(t)
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))
}

// An interface that appears later and matches --interface is enforced on
// too, and one that goes away is forgotten: both logged and audited.
func TestInterfacesThatComeAndGoAreFollowed(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	// The lab's host interface starts with "vh"; the namespace is the
	// lab's own, so the glob matches only what this test makes.
	ip := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", l.HostNS}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	// A named interface that goes away first must not stop the glob from
	// being followed.
	fixed := "zzfix" + randomHex(t, 2)
	ip("link", "add", fixed, "type", "veth", "peer", "name", "x"+fixed)
	e := startEnforcing(t, l, dir, enforceOpts{args: []string{"--interface", "vh*", "--interface", fixed}})
	ip("link", "del", fixed)
	e.waitLog(t, "interface gone, and its links with it: interface="+fixed, 1)
	name := "vhnew" + randomHex(t, 2)
	ip("link", "add", name, "type", "veth", "peer", "name", "x"+name)
	ip("link", "set", name, "up")
	e.waitLog(t, "enforcing on a new interface: interface="+name, 1)
	var index int
	err := l.Do(l.HostNS, func() error {
		i, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		index = i.Index
		for _, typ := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: i.Index, Attach: typ})
			if err != nil {
				return err
			}
			if len(res.Programs) != 1 {
				t.Errorf("%s %v: %d programs, want ours", name, typ, len(res.Programs))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(pins.LayoutDir(e.pinDir), pins.LinkName(index, "ingress"))
	if _, err := os.Stat(pin); err != nil {
		t.Errorf("the new interface's link is not pinned: %v", err)
	}

	ip("link", "del", name)
	e.waitLog(t, "interface gone, and its links with it: interface="+name, 1)
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the gone interface's pin is still there (%v)", err)
	}
	changes := map[string][]any{}
	for _, r := range e.auditRecords(t, "link_changed") {
		changes[r.Resource] = append(changes[r.Resource], r.Details["change"])
	}
	for _, n := range []string{fixed, name} {
		if got := fmt.Sprint(changes[n]); got != "[attached gone]" {
			t.Errorf("link_changed records for %s: %s, want attached, then gone", n, got)
		}
	}
}

// Monitor mode for rollout: what the policy denies passes, counted and
// audited as would-be denials, and status and metrics say plainly that the
// host is not segmented. Restarting in enforce mode (adopting the pins)
// drops it.
func TestMonitorModeThenEnforce(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{args: []string{"--mode", "monitor"}})
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))

	scrape := e.scrape(t)
	if got := metricValue(t, scrape, `pci_segment_packets_total{direction="ingress",verdict="would_deny"}`); got < 1 {
		t.Errorf("would-deny ingress packets %v, want the SSH attempt counted", got)
	}
	if got := metricValue(t, scrape, `pci_segment_packets_total{direction="ingress",verdict="deny"}`); got != 0 {
		t.Errorf("denied ingress packets %v in monitor mode, want 0", got)
	}
	if got := metricValue(t, scrape, "pci_segment_monitor_mode"); got != 1 {
		t.Errorf("pci_segment_monitor_mode %v, want 1", got)
	}
	var would int
	for deadline := time.Now().Add(5 * time.Second); would == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, r := range e.auditRecords(t, "packet_denied") {
			if strings.Contains(r.Outcome, "monitor mode") && r.Details["dport"] == float64(22) {
				would++
			}
		}
	}
	if would == 0 {
		t.Error("no packet_denied record marks the passed SSH attempt as a monitor-mode would-be denial")
	}
	s := statusOf(t, e, 0, 0)
	if s.Policy == nil || s.Policy.Mode != "monitor" {
		t.Errorf("status policy %+v, want mode monitor", s.Policy)
	}
	if !slicesContainsSub(s.Findings, "MONITOR MODE") {
		t.Errorf("status findings %v do not say the host is not segmented", s.Findings)
	}

	e.cmd.Process.Signal(syscall.SIGTERM)
	e.wait(t)
	enforcing := startEnforcing(t, l, dir, enforceOpts{pinDir: e.pinDir})
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	if s := statusOf(t, enforcing, 0, 0); s.Policy == nil || s.Policy.Mode != "enforce" {
		t.Errorf("status policy %+v after restarting in enforce mode", s.Policy)
	}
}

func slicesContainsSub(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// An upgrade to a build whose pin layout changed (v2 to v3), under
// traffic: --replace stops the running instance, swaps the new programs
// onto the old links in place, carries connection tracking over into the
// new maps, and removes the old layout. An established connection carries
// on, denied traffic never passes, allowed traffic never fails.
func TestUpgradeToAnotherLayoutUnderTraffic(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	first := startEnforcing(t, l, dir, enforceOpts{})
	before := pinnedLinks(t, first)

	c := establish(t, l, 443)
	p := startProber(t, l)
	time.Sleep(500 * time.Millisecond)
	next := startEnforcing(t, l, dir, enforceOpts{pinDir: first.pinDir, binary: nextLayout, args: []string{"--replace"}})
	if err := first.wait(t); err != nil {
		t.Errorf("the replaced enforce: %v", err)
	}
	time.Sleep(500 * time.Millisecond)
	p.end(t)
	if err := echo(c, 3*time.Second); err != nil {
		t.Errorf("an established connection did not survive the upgrade: %v", err)
	}
	out := next.out.String()
	for _, want := range []string{"connection tracking carried over", "replaced pins of another layout"} {
		if !strings.Contains(out, want) {
			t.Errorf("the upgrade's output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(pins.LayoutDir(first.pinDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old layout's directory is still there (%v)", err)
	}
	sameLinksNewPrograms(t, before, pinnedLinksIn(t, filepath.Join(first.pinDir, "v3")))
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 1 {
		t.Errorf("%d ingress and %d egress programs attached, want one each", in, eg)
	}
}
