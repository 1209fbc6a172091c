package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/lab"
)

// v2Policy is labPolicy with ingress moved from TCP 443 to TCP 8443.
var v2Policy = strings.Replace(labPolicy, "- {protocol: TCP, port: 443}\n  egress", "- {protocol: TCP, port: 8443}\n  egress", 1)

// waitLog waits until the enforce output holds n lines with what.
func (e *enforcer) waitLog(t *testing.T, what string, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); strings.Count(e.out.String(), what) < n; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("enforce output has %d lines with %q, want %d:\n%s", strings.Count(e.out.String(), what), what, n, e.out.String())
		}
	}
}

// replaceFile writes body to a temporary file and renames it over name, as
// configuration tools do.
func replaceFile(t *testing.T, name, body string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(name), ".tmp-"+filepath.Base(name))
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// echo sends a line on c and reads it back within timeout.
func echo(c net.Conn, timeout time.Duration) error {
	msg := []byte("still here\n")
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := c.Read(got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return net.UnknownNetworkError("echo garbled")
	}
	return nil
}

// establish opens a TCP connection from the peer to the host's port and
// checks one echo over it.
func establish(t *testing.T, l *lab.Lab, port uint16) net.Conn {
	t.Helper()
	var c net.Conn
	err := l.Do(l.PeerNS, func() (err error) {
		c, err = net.DialTimeout("tcp", ap(l.Host4, port).String(), 3*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := echo(c, 3*time.Second); err != nil {
		t.Fatalf("a new connection to %d: %v", port, err)
	}
	return c
}

// datagrams collects what arrives on a unix datagram socket made at a
// fresh path (systemd's notify socket, syslog) until the test ends.
func datagrams(t *testing.T) (path string, got <-chan string) {
	t.Helper()
	path = filepath.Join(worldDir(t), "sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := make(chan string, 64)
	go func() {
		defer close(c)
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			select {
			case c <- string(buf[:n]):
			default: // a test that stopped reading
			}
		}
	}()
	return path, c
}

// A reload that revokes a flow stops it on its next packet, even a
// connection established before it: connection tracking judges entries of
// an older generation again.
func TestSIGHUPReloadRevokesAnEstablishedConnection(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 8443))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{})

	c := establish(t, l, 443)
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))

	// The signal follows at once, well inside the watcher's settling
	// time, so the reload that applies v2 is the signal's (loader, then
	// worker); the file change that follows finds nothing new.
	if err := os.WriteFile(filepath.Join(dir, "cde.yaml"), []byte(v2Policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.waitLog(t, "policy applied by worker: generation=2", 1)
	if !strings.Contains(e.out.String(), "reload requested; forwarded to the worker") {
		t.Errorf("the loader did not log forwarding the reload:\n%s", e.out.String())
	}

	if err := echo(c, time.Second); err == nil {
		t.Error("a connection v2 revokes still carries data after the reload")
	}
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))
	recs := e.auditRecords(t, "policy_applied")
	if len(recs) != 2 || recs[1].Details["generation"] != float64(2) || recs[1].Details["trigger"] != "SIGHUP" {
		t.Fatalf("policy_applied records %+v, want generation 1, then 2 by SIGHUP", recs)
	}
	// What the change did, for the ruleset review (Req 1.2.2).
	added, _ := recs[1].Details["allowances_added"].([]any)
	removed, _ := recs[1].Details["allowances_removed"].([]any)
	if len(added) != 2 || len(removed) != 2 || !strings.Contains(fmt.Sprint(added), "TCP 8443") || !strings.Contains(fmt.Sprint(removed), "TCP 443") {
		t.Errorf("the reload's record says added %v, removed %v; want TCP 8443 in and TCP 443 out, from both peers", added, removed)
	}
}

// Editing the policy directory reloads by itself: a file replaced by
// rename, as configuration tools write, is seen.
func TestReplacedPolicyFileReloads(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 8443))
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{})
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))

	replaceFile(t, filepath.Join(dir, "cde.yaml"), v2Policy)
	e.waitLog(t, "policy applied by worker: generation=2", 1)
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))
	if got := metricValue(t, e.scrape(t), `pci_segment_reloads_total{result="applied"}`); got != 1 {
		t.Errorf("reloads applied = %v, want 1", got)
	}
}

// A reload to a set that does not validate, or does not fit the maps, is
// refused whole: the set in force keeps deciding, and the refusal is
// logged, audited and counted.
func TestRejectedReloadKeepsThePolicyInForce(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 8443))
	// A placeholder that holds no policy is only warned about at start:
	// refusing the set would leave the host unfiltered.
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy, "later.yaml": "# policies to come\n"})
	// labPolicy compiles to 4 prefixes; 6 leaves no room for more.
	e := startEnforcing(t, l, dir, enforceOpts{args: []string{"--max-prefixes", "6"}})
	if recs := e.auditRecords(t, "policy_warning"); !slices.ContainsFunc(recs, func(r auditRecord) bool {
		f, _ := r.Details["finding"].(string)
		return strings.Contains(f, "later.yaml") && strings.Contains(f, "holds no policy document")
	}) {
		t.Errorf("no policy_warning names the placeholder: %v", recs)
	}

	bigger := strings.Replace(v2Policy, "- ipBlock: {cidr: 10.77.1.0/24}",
		"- ipBlock: {cidr: 10.77.1.0/24}\n        - ipBlock: {cidr: 10.1.0.0/16}\n        - ipBlock: {cidr: 10.2.0.0/16}\n        - ipBlock: {cidr: 10.3.0.0/16}", 1)
	for i, bad := range []struct{ body, why string }{
		{strings.Replace(v2Policy, "policyTypes", "policyTypo", 1), "policyTypo"},
		{bigger, "--max-prefixes"},
		// Emptied in place, as `: >` or an editor that truncates
		// before it writes leaves it.
		{"", "holds no policy document"},
	} {
		if bad.body == "" {
			if err := os.Truncate(filepath.Join(dir, "cde.yaml"), 0); err != nil {
				t.Fatal(err)
			}
		} else {
			replaceFile(t, filepath.Join(dir, "cde.yaml"), bad.body)
		}
		e.waitLog(t, "worker refused to reload; the policy in force stays", i+1)
		if !strings.Contains(e.out.String(), bad.why) {
			t.Errorf("the refusal does not name %q:\n%s", bad.why, e.out.String())
		}
		mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
		mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))
	}
	if recs := e.auditRecords(t, "policy_rejected"); len(recs) != 3 {
		t.Errorf("%d policy_rejected records, want 3", len(recs))
	}
	if got := metricValue(t, e.scrape(t), `pci_segment_reloads_total{result="rejected"}`); got != 3 {
		t.Errorf("reloads rejected = %v, want 3", got)
	}
	if strings.Contains(e.out.String(), "generation=2") {
		t.Errorf("a rejected set was applied:\n%s", e.out.String())
	}

	// And the next good set applies.
	replaceFile(t, filepath.Join(dir, "cde.yaml"), v2Policy)
	e.waitLog(t, "policy applied by worker: generation=2", 1)
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 8443))
}
