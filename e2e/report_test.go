package e2e

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/report"
	"github.com/pci-segment/pci-segment/status"
)

// In the lab, the report's live state, links and privilege data are what
// status shows and what the maps hold at the same moment: taken between
// two status reads that agree, and the counters read from the pinned map
// right after. A policy that matched is named, the other is listed for
// the ruleset review; the audit log verifies with the first key.
func TestReportEqualsStatusAndTheMaps(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	// Two policies: cde-web (matches below) and an unused one, whose
	// rules no flow meets.
	unused := strings.Replace(strings.Replace(labPolicy, "name: cde-web", "name: cde-unused", 1), "10.77.1.0/24", "10.77.9.0/24", 1)
	unused = strings.Replace(unused, "port: 443}\n  egress", "port: 8443}\n  egress", 1)
	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy, "unused.yaml": unused})
	e := startEnforcing(t, l, dir, enforceOpts{})
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))

	out := filepath.Join(t.TempDir(), "report.json")
	var r report.Report
	var before status.Status
	agreed := false
	for range 5 {
		before = statusNow(t, e)
		cmd := exec.Command(binary, "report", "-f", dir, "--labels", "pci-env=cde,role=web", "-o", out,
			"--pin-dir", e.pinDir, "--state-dir", e.stateDir, "--audit-dir", e.auditDir, "--key", e.keyDir)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("report: %v\n%s", err, b)
		}
		after := statusNow(t, e)
		b, _ := os.ReadFile(out)
		r = report.Report{}
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(before.Counters, after.Counters) && reflect.DeepEqual(before.Links, after.Links) {
			agreed = true
			break
		}
	}
	if !agreed {
		t.Fatal("the counters or links changed during every one of five reports")
	}
	if !r.Live.Running || !r.Live.MatchesFiles || r.Live.Generation != before.Policy.Generation || r.Live.SetSHA256 != before.Policy.SetSHA256 {
		t.Errorf("live %+v, status policy %+v", r.Live, before.Policy)
	}
	if !reflect.DeepEqual(r.Live.Counters, before.Counters) || !reflect.DeepEqual(r.Live.Links, before.Links) {
		t.Errorf("report counters %+v links %+v; status %+v %+v", r.Live.Counters, r.Live.Links, before.Counters, before.Links)
	}
	if r.Live.Counters.Ingress.AllowPackets == 0 || r.Live.Counters.Ingress.DenyPackets == 0 {
		t.Errorf("counters %+v after an allowed and a dropped connection", r.Live.Counters)
	}
	// The maps, read here: the counters (summed over CPUs) and the flows.
	if got := mapCounter(t, e, bpf.CounterVerdict(0, true)); got != r.Live.Counters.Ingress.DenyPackets {
		t.Errorf("ingress denies: report %d, map %d", r.Live.Counters.Ingress.DenyPackets, got)
	}
	if got := mapCounter(t, e, bpf.CounterVerdict(0, false)); got < r.Live.Counters.Ingress.AllowPackets {
		t.Errorf("ingress allows: report %d, map %d (never fewer later)", r.Live.Counters.Ingress.AllowPackets, got)
	}
	if r.Live.Conntrack == nil || r.Live.Conntrack.Entries == 0 || r.Live.Conntrack.Capacity != before.Conntrack.Capacity {
		t.Errorf("conntrack %+v, status %+v", r.Live.Conntrack, before.Conntrack)
	}
	for _, p := range []struct{ got, want *status.Process }{{r.Privilege.Loader, before.Loader}, {r.Privilege.Worker, before.Worker}} {
		if p.got == nil || p.want == nil || p.got.PID != p.want.PID || !reflect.DeepEqual(p.got.Privileges, p.want.Privileges) || p.got.MACLabel != p.want.MACLabel {
			t.Errorf("privilege %+v, status %+v", p.got, p.want)
		}
	}
	loader, worker := e.pids(t)
	if r.Privilege.Loader.PID != loader || r.Privilege.Worker.PID != worker || r.Privilege.Worker.User.Name != e.user {
		t.Errorf("report names loader %d worker %d (%s); they are %d and %d (%s)", r.Privilege.Loader.PID, r.Privilege.Worker.PID,
			r.Privilege.Worker.User.Name, loader, worker, e.user)
	}
	if len(r.Unmatched.Matched) != 1 || r.Unmatched.Matched[0].Policy != "cde-web" || len(r.Unmatched.Policies) != 1 || r.Unmatched.Policies[0] != "cde-unused" {
		t.Errorf("unmatched %+v: want cde-web matched, cde-unused listed", r.Unmatched)
	}
	if r.Unmatched.From == "" {
		t.Errorf("no window start: the audit log's policy_applied record should give it")
	}
	if r.Audit.Result != "intact" || !r.Audit.Keyed || r.Audit.Records == 0 {
		t.Errorf("audit %+v", r.Audit)
	}
	if len(r.Overrides.InEffect) != 0 {
		// The harness names the account by override; status says the same.
		for _, o := range r.Overrides.InEffect {
			if !strings.HasPrefix(o.Name, "PCI_SEGMENT_PRIVILEGE_") || o.Production == "" {
				t.Errorf("override %+v", o)
			}
		}
	}
}

func statusNow(t *testing.T, e *enforcer) status.Status {
	t.Helper()
	b, err := runStatus(t, e, 0, 0, "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, b)
	}
	var s status.Status
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// mapCounter sums a counter slot of the pinned map over the CPUs.
func mapCounter(t *testing.T, e *enforcer, slot uint32) uint64 {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, bpf.Layout, bpf.DatapathMapCounters), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var per []bpf.DatapathCounter
	if err := m.Lookup(slot, &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range per {
		n += c.Packets
	}
	return n
}
