package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/privilege"
)

// labPolicy allows ingress TCP 443 from the peer's subnet, and egress UDP 53
// and TCP 443 to the peer alone, in both families.
const labPolicy = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: cde-web
spec:
  podSelector:
    matchLabels:
      pci-env: cde
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: {cidr: 10.77.1.0/24}
        - ipBlock: {cidr: "fd00:77:1::/64"}
      ports:
        - {protocol: TCP, port: 443}
  egress:
    - to:
        - ipBlock: {cidr: 10.77.1.2/32}
        - ipBlock: {cidr: "fd00:77:1::2/128"}
      ports:
        - {protocol: UDP, port: 53}
        - {protocol: TCP, port: 443}
`

// ingressOnlyPolicy governs ingress only, allowing TCP 443 in.
const ingressOnlyPolicy = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: ingress-only
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
    - ports:
        - {protocol: TCP, port: 443}
`

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

// mustConnect and mustDrop check one TCP flow through the lab.
func mustConnect(t *testing.T, l *lab.Lab, ns string, local netip.Addr, remote netip.AddrPort) {
	t.Helper()
	if err := l.DialTCP(ns, local, remote, 3*time.Second); err != nil {
		t.Errorf("want connected: %v", err)
	}
}

func mustDrop(t *testing.T, l *lab.Lab, ns string, local netip.Addr, remote netip.AddrPort) {
	t.Helper()
	err := l.DialTCP(ns, local, remote, time.Second)
	if !errors.Is(err, lab.ErrTimeout) {
		t.Errorf("want dropped (timeout), got %v", err)
	}
}

func listen(t *testing.T, l *lab.Lab, ns string, addrs ...netip.AddrPort) {
	t.Helper()
	for _, a := range addrs {
		if _, err := l.ListenTCP(ns, a); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLabPolicyAllowsAndDrops(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	listen(t, l, l.PeerNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	for _, a := range []netip.Addr{l.Peer4, l.Peer6} {
		if _, err := l.ServeUDPEcho(l.PeerNS, ap(a, 53)); err != nil {
			t.Fatal(err)
		}
	}
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})

	for _, fam := range []struct {
		name                    string
		host, peer, peerOutside netip.Addr
	}{
		{"IPv4", l.Host4, l.Peer4, l.PeerOutside4},
		{"IPv6", l.Host6, l.Peer6, l.PeerOutside6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			t.Run("ingress TCP 443 from the peer connects", func(t *testing.T) {
				mustConnect(t, l, l.PeerNS, fam.peer, ap(fam.host, 443))
			})
			t.Run("ingress TCP 22 from the peer is dropped", func(t *testing.T) {
				mustDrop(t, l, l.PeerNS, fam.peer, ap(fam.host, 22))
			})
			t.Run("ingress TCP 443 from outside the allowed CIDR is dropped", func(t *testing.T) {
				mustDrop(t, l, l.PeerNS, fam.peerOutside, ap(fam.host, 443))
			})
			t.Run("egress UDP 53 query gets its reply", func(t *testing.T) {
				if err := l.UDPExchange(l.HostNS, netip.Addr{}, ap(fam.peer, 53), 3*time.Second); err != nil {
					t.Error(err)
				}
			})
			t.Run("egress TCP 443 connection gets its replies", func(t *testing.T) {
				mustConnect(t, l, l.HostNS, netip.Addr{}, ap(fam.peer, 443))
			})
			t.Run("egress TCP 22 is dropped", func(t *testing.T) {
				mustDrop(t, l, l.HostNS, netip.Addr{}, ap(fam.peer, 22))
			})
		})
	}

	t.Run("denied packets reach the audit log", func(t *testing.T) {
		var log string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			log = e.auditLog(t)
			if strings.Contains(log, `"resource":"10.77.1.1:22"`) && strings.Contains(log, `"resource":"[fd00:77:1::1]:22"`) {
				break
			}
		}
		for _, want := range []string{`"type":"policy_applied"`, `"type":"packet_denied"`, `"who":"10.77.1.2"`,
			`"resource":"10.77.1.1:22"`, `"resource":"[fd00:77:1::1]:22"`, `"policy":"default deny"`} {
			if !strings.Contains(log, want) {
				t.Errorf("audit log lacks %s:\n%s", want, log)
			}
		}
	})

	t.Run("metrics count allowed and denied packets", func(t *testing.T) {
		s := e.scrape(t)
		for _, series := range []string{
			`pci_segment_packets_total{direction="ingress",verdict="allow"}`,
			`pci_segment_packets_total{direction="ingress",verdict="deny"}`,
			`pci_segment_packets_total{direction="egress",verdict="allow"}`,
			`pci_segment_packets_total{direction="egress",verdict="deny"}`,
		} {
			if v := metricValue(t, s, series); v <= 0 {
				t.Errorf("%s = %v, want > 0", series, v)
			}
		}
	})
}

func TestIngressOnlyPolicyKeepsHostConnections(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	listen(t, l, l.PeerNS, ap(netip.IPv6Unspecified(), 22))
	startEnforcing(t, l, policyDir(t, map[string]string{"in.yaml": ingressOnlyPolicy}), enforceOpts{})

	// Egress is not governed: the host's own connection creates state and
	// its replies pass the governed ingress.
	mustConnect(t, l, l.HostNS, netip.Addr{}, ap(l.Peer4, 22))
	mustConnect(t, l, l.HostNS, netip.Addr{}, ap(l.Peer6, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustDrop(t, l, l.PeerNS, l.Peer6, ap(l.Host6, 22))
}

func TestWorkerRunsUnprivilegedOnEveryThread(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, workerPID := e.pids(t)

	u, err := user.Lookup(e.user)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	// Supplementary groups as initgroups gives them (and so `id -G` and
	// systemd's User=): the primary group and any others of the account.
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var wantGroups []uint32
	for _, g := range gids {
		n, _ := strconv.ParseUint(g, 10, 32)
		wantGroups = append(wantGroups, uint32(n))
	}
	slices.Sort(wantGroups)
	threads, err := privilege.ReadThreads(workerPID)
	if err != nil {
		t.Fatal(err)
	}
	if len(threads) < 2 {
		t.Fatalf("worker has %d threads; a Go process has several", len(threads))
	}
	for _, th := range threads {
		if !allIDs(th.UID, uint32(uid)) || !allIDs(th.GID, uint32(gid)) {
			t.Errorf("thread %d: Uid %+v Gid %+v, want all four %d and %d", th.TID, th.UID, th.GID, uid, gid)
		}
		// The worker must carry exactly the account's groups, none of
		// the loader's.
		if got := slices.Sorted(slices.Values(th.Groups)); !slices.Equal(got, wantGroups) {
			t.Errorf("thread %d: supplementary groups %v, want the account's %v", th.TID, th.Groups, wantGroups)
		}
		for name, v := range map[string]uint64{"CapInh": th.CapInh, "CapPrm": th.CapPrm, "CapEff": th.CapEff, "CapBnd": th.CapBnd, "CapAmb": th.CapAmb} {
			if v != 0 {
				t.Errorf("thread %d: %s = %#x, want 0", th.TID, name, v)
			}
		}
		if !th.NoNewPrivs {
			t.Errorf("thread %d: NoNewPrivs off", th.TID)
		}
		if th.Seccomp != privilege.SeccompFilter {
			t.Errorf("thread %d: Seccomp %v, want filter (2)", th.TID, th.Seccomp)
		}
	}

	// The worker itself held 100 threads it started after the drop, and
	// every other, to the identity the loader gave it; the audit log
	// says against what and over how many.
	wantID := privilege.Identity{UID: uint32(uid), GID: uint32(gid), Groups: wantGroups}.String()
	drops := e.auditRecords(t, "privilege_drop")
	if len(drops) != 1 {
		t.Fatalf("%d privilege_drop records, want 1", len(drops))
	}
	if got := drops[0].Details["identity"]; got != wantID {
		t.Errorf("privilege_drop checked identity %v, want %s", got, wantID)
	}
	if n, _ := drops[0].Details["threads_checked"].(float64); n < 100 {
		t.Errorf("privilege_drop checked %v threads, want at least the 100 started after the drop", drops[0].Details["threads_checked"])
	}

	out, err := exec.Command("ps", "-o", "pid=", "-C", "pci-segment").Output()
	if err != nil {
		t.Fatalf("ps -C pci-segment: %v", err)
	}
	listed := strings.Fields(string(out))
	for _, pid := range []int{loaderPID, workerPID} {
		if !contains(listed, strconv.Itoa(pid)) {
			t.Errorf("ps -C pci-segment lists %v, missing %d", listed, pid)
		}
	}
}

func allIDs(ids privilege.IDs, want uint32) bool {
	return ids.Real == want && ids.Effective == want && ids.Saved == want && ids.FS == want
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestEnforcementSurvivesKillAndDetachRemovesIt(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, workerPID := e.pids(t)

	// Under a running enforce, detach refuses, and records nothing: the
	// loader would go on reporting that it enforces.
	sock, records := datagrams(t)
	out, err := exec.Command(binary, "detach", "--pin-dir", e.pinDir, "--syslog", sock).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "stop it first") || !strings.Contains(string(out), fmt.Sprintf("pid %d", loaderPID)) {
		t.Errorf("detach under a running enforce: %v\n%s", err, out)
	}
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	select {
	case r := <-records:
		t.Errorf("a refused detach recorded %q", r)
	case <-time.After(300 * time.Millisecond):
	}

	// The loader first: killed second, it might already have exited on
	// its own after seeing the worker die.
	for _, pid := range []int{loaderPID, workerPID} {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	e.wait(t)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(workerPID, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker %d still alive after its loader was killed", workerPID)
		}
	}

	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustDrop(t, l, l.PeerNS, l.Peer6, ap(l.Host6, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	if in, eg := tcxPrograms(t, l); in != 1 || eg != 1 {
		t.Fatalf("after kill -9: %d ingress and %d egress programs, want 1 and 1", in, eg)
	}

	out, err = exec.Command(binary, "detach", "--pin-dir", e.pinDir, "--syslog", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("detach: %v\n%s", err, out)
	}
	// Ending enforcement is recorded, beside the audit seals.
	select {
	case r := <-records:
		_, body, _ := strings.Cut(r, "pci-segment-audit[")
		_, body, _ = strings.Cut(body, "]: ")
		var rec struct {
			Type, Outcome, Who, Resource string
			Details                      struct{ Links []string }
		}
		if err := json.Unmarshal([]byte(body), &rec); err != nil || rec.Type != "enforcement_detached" || rec.Outcome != "success" ||
			!strings.HasPrefix(rec.Who, "uid 0") || rec.Resource != e.pinDir || len(rec.Details.Links) != 2 {
			t.Errorf("syslog got %q (%v), want an enforcement_detached record naming both links", r, err)
		}
	case <-time.After(5 * time.Second):
		t.Error("detach recorded nothing in syslog")
	}
	if left := pinsLeft(t, e.pinDir); len(left) > 0 {
		t.Errorf("pins left after detach: %v", left)
	}
	if in, eg := tcxPrograms(t, l); in != 0 || eg != 0 {
		t.Errorf("after detach: %d ingress and %d egress programs still attached", in, eg)
	}
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer6, ap(l.Host6, 22))
}

// failsToStart runs enforce expecting it to fail before attaching anything.
func failsToStart(t *testing.T, l *lab.Lab, e *enforcer, wantOutput ...string) {
	t.Helper()
	e.start(t)
	err := e.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("enforce exit: %v, want a non-zero status\n%s", err, e.out.String())
	}
	out := e.out.String()
	for _, w := range wantOutput {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if left := pinsLeft(t, e.pinDir); len(left) > 0 {
		t.Errorf("pins left: %v", left)
	}
	if in, eg := tcxPrograms(t, l); in != 0 || eg != 0 {
		t.Errorf("%d ingress and %d egress programs attached", in, eg)
	}
}

func TestInvalidPolicyAtStartAttachesNothing(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	bad := strings.Replace(labPolicy, "cidr: 10.77.1.0/24", "cidr: 10.77.1.1/24", 1)
	dir := policyDir(t, map[string]string{"bad.yaml": bad})
	e := newEnforcer(t, l, dir, enforceOpts{})
	failsToStart(t, l, e, "bad.yaml", "spec.ingress[0].from[0].ipBlock.cidr", "10.77.1.0/24", "nothing was attached")
}

func TestMissingServiceAccountQuotesTheGuide(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	missing := "pcs-missing-" + randomHex(t, 4)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := newEnforcer(t, l, dir, enforceOpts{noAccount: true, env: []string{"PCI_SEGMENT_PRIVILEGE_USER=" + missing}})
	failsToStart(t, l, e, fmt.Sprintf("%q does not exist", missing), "groupadd --system pci-segment", "--shell /usr/sbin/nologin")
}

func TestEnforceRefusesWithoutRoot(t *testing.T) {
	requireRoot(t) // to build the binary and create the account it runs as
	user, _ := lab.ServiceAccount(t)
	u, err := userIDs(user)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"enforce", "-f", "/nonexistent", "--interface", "lo"}, scratchDirs(t)...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u[0], Gid: u[1]}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must run as root") {
		t.Fatalf("enforce as uid %d: %v\n%s", u[0], err, out)
	}
}

func userIDs(name string) ([2]uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return [2]uint32{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return [2]uint32{uint32(uid), uint32(gid)}, nil
}

func TestValidateExitCodes(t *testing.T) {
	requireRoot(t) // only for the built binary
	good := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	bad := policyDir(t, map[string]string{"bad.yaml": strings.Replace(labPolicy, "ports:", "portz:", 1)})
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"validate", "-f", good, "--labels", "pci-env=cde"}, 0},
		{[]string{"validate", "-f", bad}, 1},
		{[]string{"validate"}, 2},
		{[]string{"validate", "-f", good, "--labels", "no-equals-sign"}, 2},
	} {
		cmd := exec.Command(binary, tc.args...)
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != tc.code {
			t.Errorf("%v: exit %d, want %d\n%s", tc.args, got, tc.code, out)
		}
	}
}

func TestEnforceNamesTheMissingCapability(t *testing.T) {
	requireRoot(t)
	// Root with CAP_PERFMON and CAP_KILL out of the bounding set: exec
	// leaves them out of the effective set too.
	cmd := exec.Command("setpriv", append([]string{"--bounding-set", "-perfmon,-kill", binary,
		"enforce", "-f", "/nonexistent", "--interface", "lo"}, scratchDirs(t)...)...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing capabilities cap_perfmon,cap_kill") {
		t.Fatalf("enforce without cap_perfmon: %v\n%s", err, out)
	}
}

// scratchDirs are pin, audit and state directories of the test's own, for
// commands expected to be refused: should a refusal ever regress, they
// still touch no real install.
func scratchDirs(t *testing.T) []string {
	return []string{"--pin-dir", "/sys/fs/bpf/pci-segment-e2e-" + randomHex(t, 6),
		"--audit-dir", filepath.Join(worldDir(t), "audit"), "--state-dir", filepath.Join(worldDir(t), "state")}
}

func TestWorkerGetsOnlyItsDescriptorsAndNoTerminal(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	// A descriptor the loader inherits without close-on-exec, as from a
	// careless parent or socket activation.
	leak, err := os.CreateTemp(worldDir(t), "leak-*")
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	e.cmd.ExtraFiles = []*os.File{leak}
	e.start(t)
	e.waitEnforcing(t)
	loaderPID, workerPID := e.pids(t)

	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", workerPID))
	if err != nil {
		t.Fatal(err)
	}
	maps := 0
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", workerPID, fd.Name()))
		switch {
		case target == leak.Name():
			t.Errorf("worker holds the loader's inherited fd %s -> %s", fd.Name(), target)
		case strings.HasPrefix(target, "/dev/pts") || strings.HasPrefix(target, "/dev/tty"):
			t.Errorf("worker holds a terminal: fd %s -> %s", fd.Name(), target)
		case target == "anon_inode:bpf-map":
			maps++
		case target == "anon_inode:bpf-prog" || target == "anon_inode:bpf_link":
			t.Errorf("worker holds a program or link: fd %s -> %s", fd.Name(), target)
		}
	}
	if maps != len(bpf.WorkerMaps) {
		t.Errorf("worker holds %d map fds, want the %d it is sent", maps, len(bpf.WorkerMaps))
	}

	checkLoaderDescriptors(t, loaderPID, leak.Name(), e.pinDir, e.keyDir)

	// Its own session, no controlling terminal: stat fields 6 (session)
	// and 7 (tty_nr), counted after the parenthesised command name.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", workerPID))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if f[3] != strconv.Itoa(workerPID) || f[4] != "0" {
		t.Errorf("worker session %s tty_nr %s; want its own session %d and no terminal (loader %d)", f[3], f[4], workerPID, loaderPID)
	}
}

// checkLoaderDescriptors holds the loader, once enforcing, to what it
// still needs: the worker's maps (the counters read-only) for the next
// worker, the two programs for the next interface, the channel, the
// worker's output pipe and pidfd, and the pin directory, whose flock is
// the single-instance lock, and the binary workers run from. No link
// (pinned), no other map, nothing it inherited, no file or socket beyond
// those.
func checkLoaderDescriptors(t *testing.T, pid int, inherited, pinDir, keyDir string) {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, fd := range fds {
		n, _ := strconv.Atoi(fd.Name())
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n))
		kind, _, _ := strings.Cut(target, ":[")
		switch {
		case n <= 2:
			continue // stdio: the service's journal, here the test's pipes
		case target == inherited:
			t.Errorf("loader keeps the descriptor it inherited: fd %d -> %s", n, target)
		case kind == "anon_inode":
			kind = target // [eventpoll], [eventfd], [pidfd]
		case target == pinDir:
			kind = "lock"
		case target == binary:
			kind = "worker binary"
		case target == keyDir:
			kind = "audit keys"
		case strings.HasPrefix(target, "/sys/fs/cgroup/") && strings.Contains(target, "/cpu"):
			// The Go runtime's own, read-only: the cgroup CPU limit it
			// re-reads to keep GOMAXPROCS right.
			continue
		}
		got[kind]++
	}
	want := map[string]int{
		"anon_inode:bpf-map":     len(bpf.WorkerMaps),
		"anon_inode:bpf-prog":    2,
		"socket":                 2, // the channel to the worker; netlink, for interface changes
		"pipe":                   1, // the worker's output
		"anon_inode:[pidfd]":     1, // the worker
		"anon_inode:[eventpoll]": 1, // the runtime's poller
		"anon_inode:[eventfd]":   1,
		"lock":                   1, // the pin directory, flocked
		"audit keys":             1, // where the audit chains' first keys go
		"worker binary":          1, // pci-segment, which every worker runs from
	}
	if !maps.Equal(got, want) {
		t.Errorf("loader descriptors by kind %v, want %v", got, want)
	}
}

func TestKilledWorkerIsReplacedWithoutAGap(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, first := e.pids(t)

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// While no worker runs, the pinned links still decide.
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))

	var second int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if strings.Count(e.out.String(), "policy applied by worker") >= 2 {
			_, second = e.pids(t)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no second worker applied a policy:\n%s", e.out.String())
		}
	}
	if second == first {
		t.Fatalf("worker pid unchanged (%d)", first)
	}
	if err := syscall.Kill(loaderPID, 0); err != nil {
		t.Fatalf("loader gone after a worker restart: %v", err)
	}
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))

	log := e.auditLog(t)
	for _, want := range []string{`"type":"worker_restarted"`, `"count":1`, `"generation":2`} {
		if !strings.Contains(log, want) {
			t.Errorf("audit log lacks %s:\n%s", want, log)
		}
	}
}

func TestLoaderKeepsOnlyTheCapabilitiesItStillNeeds(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, _ := e.pids(t)
	want := privilege.CapMask(privilege.CapBPF, privilege.CapNetAdmin, privilege.CapSetuid,
		privilege.CapSetgid, privilege.CapSetpcap, privilege.CapKill)
	threads, err := privilege.ReadThreads(loaderPID)
	if err != nil {
		t.Fatal(err)
	}
	spawners := 0
	for _, th := range threads {
		bnd := want
		if th.CapBnd == 0 {
			// The thread that started the worker emptied its own
			// bounding set for it, and waits for it.
			spawners++
			bnd = 0
		}
		for name, c := range map[string][2]uint64{"CapEff": {th.CapEff, want}, "CapPrm": {th.CapPrm, want}, "CapBnd": {th.CapBnd, bnd}} {
			if c[0] != c[1] {
				t.Errorf("loader thread %d %s = %v, want %v", th.TID, name, privilege.CapNames(c[0]), privilege.CapNames(c[1]))
			}
		}
		if th.CapInh != 0 || th.CapAmb != 0 {
			t.Errorf("loader thread %d: CapInh %#x CapAmb %#x, want 0", th.TID, th.CapInh, th.CapAmb)
		}
	}
	if spawners != 1 {
		t.Errorf("%d loader threads with an empty bounding set, want the one that started the worker", spawners)
	}
}

func TestLoaderRunsUnderItsOwnFilter(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	loaderPID, _ := e.pids(t)
	threads, err := privilege.ReadThreads(loaderPID)
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range threads {
		if th.Seccomp != privilege.SeccompFilter {
			t.Errorf("loader thread %d: Seccomp %v, want filter", th.TID, th.Seccomp)
		}
	}
}

func TestPrivilegeSetupFailuresStartNoWorker(t *testing.T) {
	requireRoot(t)
	user, _ := lab.ServiceAccount(t)
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"unknown account", []string{"PCI_SEGMENT_PRIVILEGE_USER=pcs-missing-" + randomHex(t, 3)}, "does not exist"},
		{"account whose group is missing", []string{"PCI_SEGMENT_PRIVILEGE_USER=" + user, "PCI_SEGMENT_PRIVILEGE_GROUP=pcs-nogroup-" + randomHex(t, 3)}, "service group"},
		{"override with a bad value", []string{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP=off"}, "PCI_SEGMENT_SKIP_PRIVILEGE_DROP"},
		{"seccomp override with a bad value", []string{"PCI_SEGMENT_PRIVILEGE_USER=" + user, "PCI_SEGMENT_DISABLE_SECCOMP=maybe"}, "PCI_SEGMENT_DISABLE_SECCOMP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := lab.New(t)
			dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
			e := newEnforcer(t, l, dir, enforceOpts{noAccount: true, env: tc.env})
			failsToStart(t, l, e, tc.want)
			if strings.Contains(e.out.String(), "worker started") {
				t.Errorf("a worker was started:\n%s", e.out.String())
			}
		})
	}
}
