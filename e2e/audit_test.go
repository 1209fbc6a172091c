package e2e

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/lab"
)

// The audit trail of a real run: the loader keeps the chain's first key,
// root-only, for the auditor; the worker seals each epoch and copies the
// seal to syslog; `audit verify` with that key finds the chain intact,
// across a restart that goes on with the same chain.
func TestAuditTrailVerifiesWithTheLoadersKey(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	sock, seals := datagrams(t)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{args: []string{"--syslog", sock}})

	// More denied flows than an epoch holds (each its own source port):
	// the seal must follow. Then one flow sent 500 times: one record and
	// one with the repeats, not 500.
	sendDistinctFlows(t, l, 1100)
	err := l.Do(l.PeerNS, func() error {
		c, err := net.Dial("udp", ap(l.Host4, 9998).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range 500 {
			c.Write([]byte("x"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-seals:
		if !strings.Contains(s, `"type":"epoch_sealed"`) || !strings.Contains(s, "pci-segment-audit") {
			t.Errorf("syslog got %q, want the epoch's seal record", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no seal reached syslog")
	}
	if got := metricValue(t, e.scrape(t), "pci_segment_audit_seals_copied"); got != 1 {
		t.Errorf("pci_segment_audit_seals_copied = %v with seals reaching syslog, want 1", got)
	}
	if recs := e.auditRecords(t, "service_start"); len(recs) != 1 || recs[0].Details["seal_copies"] != "syslog" {
		t.Errorf("service_start records %v, want one saying the seals are copied to syslog", recs)
	}

	var flood, repeats int
	for deadline := time.Now().Add(5 * time.Second); repeats == 0 && time.Now().Before(deadline); {
		flood, repeats = 0, 0
		for _, r := range e.auditRecords(t, "packet_denied") {
			if r.Details["dport"] == float64(9998) {
				flood++
				if n, ok := r.Details["repeats"].(float64); ok {
					repeats += int(n)
				}
			}
		}
	}
	if flood != 2 || repeats != 499 {
		t.Errorf("a flow sent 500 times made %d records with %d repeats, want 2 with 499", flood, repeats)
	}

	// Rotation on SIGUSR1 to the loader, which passes it on.
	e.cmd.Process.Signal(syscall.SIGUSR1)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if rotated, _ := filepath.Glob(filepath.Join(e.auditDir, "audit-*.log")); len(rotated) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGUSR1 rotated nothing")
		}
	}

	keys := e.keyDir
	entries, err := os.ReadDir(keys)
	if err != nil || len(entries) != 1 {
		t.Fatalf("the key directory holds %v (%v), want one first key", entries, err)
	}
	for p, mode := range map[string]os.FileMode{keys: os.ModeDir | 0o700, filepath.Join(keys, entries[0].Name()): 0o400} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode || st.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: mode %v uid %d, want %v and root's", p, st.Mode(), st.Sys().(*syscall.Stat_t).Uid, mode)
		}
	}

	verify := func(wantChains string) {
		t.Helper()
		out, err := exec.Command(binary, "audit", "verify", "--key", keys, "--state-dir", e.stateDir, e.auditDir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "intact") || !strings.Contains(string(out), wantChains) {
			t.Errorf("audit verify: %v\n%s", err, out)
		}
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	e.wait(t)
	verify("in 2 files, 1 chains")

	// A restart goes on with the chain: no new key, still one chain.
	again := startEnforcing(t, l, dir, enforceOpts{pinDir: e.pinDir, args: []string{"--syslog", sock,
		"--audit-dir", e.auditDir, "--state-dir", e.stateDir}, account: e.user})
	again.cmd.Process.Signal(syscall.SIGTERM)
	again.wait(t)
	if entries, _ := os.ReadDir(keys); len(entries) != 1 {
		t.Errorf("a restart with chain state made another first key: %v", entries)
	}
	verify("1 chains")

	// Without the key nothing is called intact: exit 3, and the output
	// says what was not checked.
	out, err := exec.Command(binary, "audit", "verify", "--state-dir", e.stateDir, e.auditDir).CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 || !strings.Contains(string(out), "NOT VERIFIED") ||
		!strings.Contains(string(out), "MACs NOT checked") || strings.Contains(string(out), "intact") {
		t.Errorf("audit verify without --key: %v\n%s", err, out)
	}

	// A key directory without this chain's key names the chain.
	out, err = exec.Command(binary, "audit", "verify", "--key", t.TempDir(), "--state-dir", e.stateDir, e.auditDir).CombinedOutput()
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 3 || !strings.Contains(string(out), "no first key for chain") {
		t.Errorf("audit verify with a key directory lacking the chain's key: %v\n%s", err, out)
	}

	// A clean stop sealed the epoch, so the state anchors the last
	// record: a copy of the log with its last record cut fails.
	cut := t.TempDir()
	if out, err := exec.Command("cp", "-a", e.auditDir+"/.", cut).CombinedOutput(); err != nil {
		t.Fatalf("copy the audit directory: %v\n%s", err, out)
	}
	live := filepath.Join(cut, "audit.log")
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	os.WriteFile(live, []byte(strings.Join(lines[:len(lines)-1], "")), 0o640)
	out, err = exec.Command(binary, "audit", "verify", "--key", keys, "--state-dir", e.stateDir, cut).CombinedOutput()
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != 1 || !strings.Contains(string(out), "truncated") {
		t.Errorf("audit verify of a log with its last record cut: %v\n%s", err, out)
	}

	// One byte changed in a record: verify names it.
	log, _ := filepath.Glob(filepath.Join(e.auditDir, "audit-*.log"))
	b, err = os.ReadFile(log[0])
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `"outcome":"deny"`)
	b[i+len(`"outcome":"`)] = 'D'
	os.WriteFile(log[0], b, 0o640)
	out, err = exec.Command(binary, "audit", "verify", "--key", keys, "--state-dir", e.stateDir, e.auditDir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "FAILED") || !strings.Contains(string(out), "modified") {
		t.Errorf("audit verify of an edited log: %v\n%s", err, out)
	}
}

// With --syslog-every-record a central collector gets every record at
// once, not only the seals.
func TestEveryRecordCanGoToSyslog(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	sock, records := datagrams(t)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	startEnforcing(t, l, dir, enforceOpts{args: []string{"--syslog", sock, "--syslog-every-record"}})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case r := <-records:
			if strings.Contains(r, `"type":"policy_applied"`) {
				return
			}
		case <-deadline:
			t.Fatal("no policy_applied record reached syslog")
		}
	}
}

// The audit file system full mid-run (a read-only remount is refused while
// the worker has the log open for writing, so the test fills the disk,
// which fails the writes the same way): enforcement goes on unchanged, the
// failure is counted, and once there is room the log resumes with a gap
// record, and verifies.
func TestFullAuditDiskChangesNoVerdictAndLeavesAGapRecord(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	auditDir := filepath.Join(worldDir(t), "audit")
	os.MkdirAll(auditDir, 0o750)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", auditDir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", auditDir).Run() })
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, dir, enforceOpts{args: []string{"--audit-dir", auditDir}})
	e.auditDir = auditDir

	filler := filepath.Join(auditDir, "filler")
	f, _ := os.Create(filler)
	f.Write(make([]byte, 4<<20)) // more than fits: the disk is full
	f.Close()
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	// More records than the last, partly filled page of the log holds.
	sendDistinctFlows(t, l, 200)
	var errs float64
	for deadline := time.Now().Add(5 * time.Second); errs == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		errs = metricValue(t, e.scrape(t), "pci_segment_audit_write_errors_total")
	}
	if errs == 0 {
		t.Fatal("no audit write error counted on a full disk")
	}
	os.Remove(filler)
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	// Every record lost is in a gap record (the disk may have taken a few
	// more records in the last page it had, between spells).
	var lost float64
	var gaps []auditRecord
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		gaps, lost = e.auditRecords(t, "audit_records_lost"), 0
		for _, g := range gaps {
			lost += g.Details["count"].(float64)
		}
		if errs = metricValue(t, e.scrape(t), "pci_segment_audit_write_errors_total"); len(gaps) > 0 && lost == errs {
			break
		}
	}
	if len(gaps) == 0 || lost != errs {
		t.Errorf("gap records %+v count %v lost, the metric %v", gaps, lost, errs)
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	e.wait(t)
	out, err := exec.Command(binary, "audit", "verify", "--key", e.keyDir, "--state-dir", e.stateDir, auditDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "intact") {
		t.Errorf("audit verify after the full disk: %v\n%s", err, out)
	}
}

// sendDistinctFlows sends n denied UDP datagrams from the peer, each from a
// source port of its own, so that none is folded into another's record.
func sendDistinctFlows(t *testing.T, l *lab.Lab, n int) {
	t.Helper()
	err := l.Do(l.PeerNS, func() error {
		for range n {
			c, err := net.Dial("udp", ap(l.Host4, 9999).String())
			if err != nil {
				return err
			}
			c.Write([]byte("x"))
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
