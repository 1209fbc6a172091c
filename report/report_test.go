package report

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/confine"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/status"
)

const labels = "pci-env=cde,role=checkout"

// fixture is a report's inputs: the example policies, an audit log of a
// few records with its first key, and a status of a running or a stopped
// instance (the e2e test uses the real one).
type fixture struct {
	files            []string
	auditDir, key    string
	running, stopped *status.Status
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	f := fixture{files: []string{"../examples/policies"}}
	set, err := policy.Load(f.files)
	if err != nil {
		t.Fatal(err)
	}
	f.auditDir = t.TempDir()
	key, err := audit.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.Open(f.auditDir, t.TempDir(), "c0ffee", key, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// As the worker records it: the policies in its compiled order, which
	// the datapath's match counters are indexed by.
	l, _ := policy.ParseLabels(labels)
	c, err := policy.Compile(set, l)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(audit.Record{Type: audit.TypePolicyApplied, Outcome: "success", Who: "test", Resource: "policy set",
		Details: map[string]any{"generation": 7, "policies": c.Policies, "labels": labels}})
	w.Write(audit.Record{Type: audit.TypePacketDenied, Outcome: "deny", Who: "10.0.0.1", Resource: "10.0.0.2:22"})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	os.WriteFile(audit.KeyFile(keys, "c0ffee"), []byte(hex.EncodeToString(key[:])+"\n"), 0o400)
	f.key = keys

	f.stopped = &status.Status{PinDir: "/sys/fs/bpf/pci-segment/v2", Findings: []string{}, Unavailable: []status.Unavailable{}}
	last := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	proc := func(role string, pid int, uid uint32, caps []string) *status.Process {
		return &status.Process{Role: role, PID: pid, PPID: 1, Cmdline: []string{"pci-segment", role},
			Privileges: &status.Privileges{User: status.Account{ID: uid, Name: "u"}, Group: status.Account{ID: uid, Name: "g"},
				Capabilities: status.CapSets{Effective: caps, Permitted: caps, Inheritable: []string{}, Bounding: caps, Ambient: []string{}},
				NoNewPrivs:   role == "worker", Seccomp: status.Seccomp{Mode: "filter", Filters: 1}, Threads: 5},
			MACLabel: "none"}
	}
	f.running = &status.Status{PinDir: "/sys/fs/bpf/pci-segment/v2",
		Loader:    proc("loader", 100, 0, []string{"cap_bpf", "cap_net_admin"}),
		Worker:    proc("worker", 101, 990, []string{}),
		Overrides: []status.Override{{Name: "PCI_SEGMENT_DISABLE_SECCOMP", Value: "1", InEffect: true, Source: "loader environment"}, {Name: "PCI_SEGMENT_SKIP_PRIVILEGE_DROP", Value: "0", Source: "loader environment"}},
		Links: []status.Link{{Pin: "link_2_ingress", ID: 5, Ifindex: 2, Interface: "eth0", Direction: "ingress", Program: status.Prog{ID: 9, Name: "pci_ingress"}, Ahead: []status.Prog{}, Behind: []status.Prog{}},
			{Pin: "link_2_egress", ID: 6, Ifindex: 2, Interface: "eth0", Direction: "egress", Program: status.Prog{ID: 10, Name: "pci_egress"}, Ahead: []status.Prog{}, Behind: []status.Prog{}}},
		Policy:     &status.Policy{Generation: 7, SetSHA256: set.HashHex(), Layout: 2, Mode: "enforce"},
		Counters:   &status.Counters{Ingress: status.Verdicts{AllowPackets: 10, AllowBytes: 1000, DenyPackets: 3, DenyBytes: 180}, Drops: map[string]uint64{"no_rule": 3}},
		Conntrack:  &status.Conntrack{Entries: 4, Capacity: 32768},
		PolicyHits: []status.PolicyHit{{Index: 0, Packets: 12, LastHit: &last}},
		Landlock: &status.Landlock{File: "/var/lib/pci-segment/worker.json", Current: true, Report: &confine.Report{PID: 101, ABI: 7, RulesetABI: 6,
			Enforced: true, Filesystem: true, Network: true, Paths: []confine.Grant{{Path: "/etc/pci-segment/policies", Access: "read"}},
			BindTCP: []confine.Port{{Port: 9720, Why: "metrics"}}, NotRestricted: []string{}}},
		Findings: []string{}, Unavailable: []status.Unavailable{}}
	return f
}

func (f fixture) build(st *status.Status) *Report {
	return Build(Options{Files: f.files, Labels: labels, AuditDir: f.auditDir, Key: f.key, Version: "pci-segment test",
		Now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), Status: st})
}

func TestRunningReport(t *testing.T) {
	f := newFixture(t)
	r := f.build(f.running)
	if !r.PolicySet.Valid || r.PolicySet.SHA256 == "" || len(r.PolicySet.Files) != 3 {
		t.Errorf("policy set %+v", r.PolicySet)
	}
	var checkout *Policy
	for i := range r.Policies {
		if r.Policies[i].Key == "cde/cde-checkout" {
			checkout = &r.Policies[i]
		}
	}
	if checkout == nil || !slices.Equal(checkout.Requirements, []string{"1.3.1", "1.3.2", "1.4.2"}) || !checkout.Applies {
		t.Errorf("cde-checkout: %+v", checkout)
	}
	if len(r.Allowances.Rows) == 0 {
		t.Fatalf("no allowances: %s", r.Allowances.Why)
	}
	for _, a := range r.Allowances.Rows {
		if a.Deciding == "" || strings.HasPrefix(a.Deciding, "none") {
			t.Errorf("allowance %+v has no deciding policy", a)
		}
	}
	if !r.Live.Running || !r.Live.MatchesFiles || r.Live.Generation != 7 || r.Live.Conntrack.Entries != 4 {
		t.Errorf("live %+v", r.Live)
	}
	// Policy 0 of the compiled set matched; every other applying one did
	// not, and is listed for the review.
	c, _ := policy.Compile(mustLoad(t, f.files), mustLabels(t))
	if len(r.Unmatched.Matched) != 1 || r.Unmatched.Matched[0].Policy != c.Policies[0] || len(r.Unmatched.Policies) != len(c.Policies)-1 {
		t.Errorf("unmatched %+v (in force: %v)", r.Unmatched, c.Policies)
	}
	if r.Unmatched.From == "" {
		t.Error("the audit log's policy_applied record of generation 7 gave no window start")
	}
	// A generation the audit log does not record cannot be named: said,
	// not guessed from the files.
	other := *f.running
	other.Policy = &status.Policy{Generation: 8, SetSHA256: f.running.Policy.SetSHA256, Mode: "enforce"}
	if u := f.build(&other).Unmatched; u.Why == "" || !strings.Contains(u.Why, "generation 8") || len(u.Policies)+len(u.Matched) != 0 {
		t.Errorf("unmatched of an unrecorded generation: %+v", u)
	}
	if len(r.Overrides.InEffect) != 1 || r.Overrides.InEffect[0].Name != "PCI_SEGMENT_DISABLE_SECCOMP" {
		t.Errorf("overrides %+v: want the one in effect, not the false boolean", r.Overrides)
	}
	if r.Audit.Result != "intact" || !r.Audit.Keyed || r.Audit.Records < 3 || r.Audit.First == "" {
		t.Errorf("audit %+v", r.Audit)
	}
	validate(t, r)
}

// Not running, each live section says so and why; nothing is made up.
func TestStoppedReportSaysWhy(t *testing.T) {
	f := newFixture(t)
	r := f.build(f.stopped)
	for name, why := range map[string]string{"live": r.Live.Why, "unmatched": r.Unmatched.Why,
		"overrides": r.Overrides.Why, "privilege": r.Privilege.Why} {
		if why == "" {
			t.Errorf("%s says nothing about why it is empty", name)
		}
	}
	if r.Live.Running || len(r.Live.Links) != 0 || r.Live.Counters != nil {
		t.Errorf("live %+v", r.Live)
	}
	validate(t, r)
}

// An invalid set is reported with every finding, and no hash: enforce
// would refuse it.
func TestInvalidSetIsReportedWithItsFindings(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	b, _ := os.ReadFile("../examples/policies/cde-checkout.yaml")
	os.WriteFile(filepath.Join(dir, "bad.yaml"), bytes.Replace(b, []byte("10.99.0.10/32"), []byte("10.99.0.10/24"), 1), 0o644)
	f.files = []string{dir}
	r := f.build(f.stopped)
	if r.PolicySet.Valid || r.PolicySet.SHA256 != "" || r.PolicySet.Why == "" {
		t.Errorf("policy set %+v", r.PolicySet)
	}
	// The document does not parse into a policy, so its findings stand
	// on their own, naming the file and the field.
	if len(r.Policies) != 0 || len(r.Findings) == 0 || !strings.Contains(r.Findings[0].Where, "bad.yaml") ||
		!strings.Contains(r.Findings[0].Where, "cidr") || r.Findings[0].Level != "error" {
		t.Errorf("policies %+v, findings %+v", r.Policies, r.Findings)
	}
	if r.Allowances.Why == "" {
		t.Error("allowances of an invalid set without a why")
	}
	validate(t, r)
}

// The schema accepts the reports above and refuses a report that drops
// a section's reason.
func TestSchemaRefusesASectionWithoutItsReason(t *testing.T) {
	f := newFixture(t)
	var doc map[string]any
	var buf bytes.Buffer
	f.build(f.stopped).WriteJSON(&buf)
	json.Unmarshal(buf.Bytes(), &doc)
	delete(doc["live"].(map[string]any), "why")
	if err := compiled(t).Validate(doc); err == nil {
		t.Error("the schema accepts a stopped instance's live section without why")
	}
}

func validate(t *testing.T, r *Report) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := compiled(t).Validate(doc); err != nil {
		t.Errorf("the report does not validate against schema.json: %v", err)
	}
}

func compiled(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLoad(t *testing.T, files []string) *policy.Set {
	s, err := policy.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLabels(t *testing.T) map[string]string {
	l, err := policy.ParseLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The evaluator's sample address gets past any number of excepts, in any
// order, nested or adjacent, and says so when none is left.
func TestSampleGetsPastEveryExcept(t *testing.T) {
	p := netip.MustParsePrefix
	var many []netip.Prefix
	for i := 199; i >= 0; i-- { // 200 adjacent /24s, last first
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i), 0}), 24))
	}
	for _, tc := range []struct {
		name string
		peer policy.Peer
		want string // "" for none
	}{
		{"no except", policy.Peer{CIDR: p("10.1.0.0/16")}, "10.1.0.0"},
		{"200 adjacent", policy.Peer{CIDR: p("10.1.0.0/16"), Except: many}, "10.1.200.0"},
		{"nested", policy.Peer{CIDR: p("10.0.0.0/8"), Except: []netip.Prefix{p("10.0.0.0/24"), p("10.0.0.0/16"), p("10.1.0.0/16")}}, "10.2.0.0"},
		{"a gap between", policy.Peer{CIDR: p("10.0.0.0/8"), Except: []netip.Prefix{p("10.0.2.0/24"), p("10.0.0.0/24")}}, "10.0.1.0"},
		{"all of it", policy.Peer{CIDR: p("10.1.0.0/16"), Except: []netip.Prefix{p("10.0.0.0/8")}}, ""},
		{"all of IPv6", policy.Peer{CIDR: p("::/0"), Except: []netip.Prefix{p("::/1"), p("8000::/1")}}, ""},
	} {
		a, ok := sample(tc.peer)
		if got := map[bool]string{true: a.String(), false: ""}[ok]; got != tc.want {
			t.Errorf("%s: sample = %q, want %q", tc.name, got, tc.want)
		}
	}
}
