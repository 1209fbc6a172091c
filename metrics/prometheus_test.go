package metrics

import (
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pci-segment/pci-segment/bpf"
	writer "github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// promtool finds Debian's promtool (package prometheus, which make test
// installs).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not installed (Debian package prometheus)")
	}
	return p
}

func TestShippedAlertRulesAndScrapeConfigPassPromtool(t *testing.T) {
	tool := promtool(t)
	if out, err := exec.Command(tool, "check", "rules", "prometheus/alerts.yml").CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// The example config names the rules where a host installs them;
	// point it at the shipped file to check both together.
	cfg, err := os.ReadFile("prometheus/scrape.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs("prometheus/alerts.yml")
	tmp := filepath.Join(t.TempDir(), "prometheus.yml")
	os.WriteFile(tmp, []byte(strings.Replace(string(cfg), "/etc/prometheus/pci-segment-alerts.yml", rules, 1)), 0o644)
	if out, err := exec.Command(tool, "check", "config", tmp).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

// The alerts fire on what they name, over series as the worker exports
// them (promtool's rule unit tests, testdata/alerts_test.yml).
func TestShippedAlertsFireOnWhatTheyName(t *testing.T) {
	tool := promtool(t)
	out, err := exec.Command(tool, "test", "rules", "testdata/alerts_test.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

func TestAScrapePassesPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	m := New(counters(t))
	m.Enforcing.WithLabelValues("eth0", "ingress").Set(1)
	m.Reloads.WithLabelValues("applied").Inc()
	body := gather(t, m)
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// gather renders the registry as a scrape does.
func gather(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// 100,000 denied packets from random addresses and ports through the real
// program: the series stay a fixed, small set, and no label carries an
// address or a port.
func TestDeniedFloodAddsNoSeries(t *testing.T) {
	testenv.RequireRoot(t)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	// Ingress governed, no rule: every packet in is denied.
	if err := objs.Halves.Put(uint32(0), bpf.DatapathHalfConfig{Generation: 1, Governed: [2]uint8{1, 0}}); err != nil {
		t.Fatal(err)
	}
	m := New(objs.Counters)
	before := strings.Count(gather(t, m), "\n")
	host := netip.MustParseAddr("192.0.2.1")
	for range 100000 {
		a := rand.Uint32()
		p := bpf.Packet{Src: netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), Dst: host, Proto: 17, Sport: uint16(rand.Uint32()), Dport: uint16(rand.Uint32())}
		if ret, err := objs.PciIngress.Run(&ebpf.RunOptions{Data: p.Frame()}); err != nil || ret != 2 {
			t.Fatalf("test run: %v, %d", err, ret)
		}
	}
	body := gather(t, m)
	if after := strings.Count(body, "\n"); after != before {
		t.Errorf("the flood changed the scrape from %d to %d lines", before, after)
	}
	if !strings.Contains(body, `pci_segment_packets_total{direction="ingress",verdict="deny"} 100000`) {
		t.Error("the flood is not counted")
	}
	for _, line := range strings.Split(body, "\n") {
		i, j := strings.IndexByte(line, '{'), strings.IndexByte(line, '}')
		if i < 0 || j < i || strings.HasPrefix(line, "#") {
			continue
		}
		for _, kv := range strings.Split(line[i+1:j], ",") {
			_, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			if _, err := netip.ParseAddr(v); err == nil {
				t.Errorf("a label holds an address: %s", line)
			}
			if _, err := strconv.Atoi(v); err == nil && !strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") {
				t.Errorf("a label holds a number (a port?): %s", line)
			}
		}
	}
}

// enforce loads the datapath, with metrics over its maps, and returns a
// function that applies a policy set (YAML) as generation gen and tells the
// metrics, as the worker does.
func enforce(t *testing.T) (*bpf.DatapathObjects, *Metrics, func(yaml string, gen uint64)) {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	m := New(objs.Counters, objs.PolicyHits)
	pm := writer.Writer(objs.All())
	return objs, m, func(yaml string, gen uint64) {
		t.Helper()
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(yaml), 0o644)
		set, err := policy.Load([]string{dir})
		if err != nil {
			t.Fatal(err)
		}
		c, err := policy.Compile(set, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pm.Apply(c, gen, set.Hash); err != nil {
			t.Fatal(err)
		}
		half, _ := pm.Active()
		m.SetPolicies(c.Policies, half)
	}
}

// Per-policy matches through the real program: a policy whose rule lets a
// flow in counts it with a time; one that never matches shows 0; 1,000
// policies applied, then removed, leave no series behind.
func TestPolicyMatchSeriesFollowTheSetInForce(t *testing.T) {
	objs, m, applyYAML := enforce(t)
	apply := func(n int, gen uint64) {
		t.Helper()
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "---\napiVersion: pci-segment/v1\nkind: NetworkPolicy\nmetadata: {name: p%04d}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - from: [{ipBlock: {cidr: 10.%d.%d.0/24}}]\n      ports: [{protocol: TCP, port: 443}]\n", i, i/256, i%256)
		}
		applyYAML(b.String(), gen)
	}
	apply(1000, 1)
	host := netip.MustParseAddr("192.0.2.1")
	p := bpf.Packet{Src: netip.MustParseAddr("10.1.7.9"), Dst: host, Proto: 6, Sport: 40000, Dport: 443} // p0263's
	if ret, err := objs.PciIngress.Run(&ebpf.RunOptions{Data: p.Frame()}); err != nil || ret != 0xffffffff {
		t.Fatalf("an allowed packet: %v, %#x", err, ret)
	}
	body := gather(t, m)
	if n := strings.Count(body, "pci_segment_policy_packets_total{"); n != 1000 {
		t.Errorf("%d policy series for 1,000 policies", n)
	}
	for _, want := range []string{`pci_segment_policy_packets_total{policy="p0263"} 1`, `pci_segment_policy_packets_total{policy="p0264"} 0`,
		`pci_segment_policy_last_match_timestamp_seconds{policy="p0264"} 0`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(body, `pci_segment_policy_last_match_timestamp_seconds{policy="p0263"} 0`+"\n") {
		t.Error("the policy that matched has no last-match time")
	}
	apply(1, 2)
	body = gather(t, m)
	if n := strings.Count(body, "pci_segment_policy_packets_total{"); n != 1 || !strings.Contains(body, `{policy="p0000"} 0`) {
		t.Errorf("after removing 999 policies, %d policy series remain:\n%s", n, body)
	}
}

// Every packet of an allowed flow counts for its policy, the replies too,
// not only the first.
func TestPolicyPacketsCountTheWholeFlow(t *testing.T) {
	objs, m, apply := enforce(t)
	apply("apiVersion: pci-segment/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n  ingress:\n    - ports: [{protocol: TCP, port: 443}]\n", 1)
	host, peer := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.4")
	in := bpf.Packet{Src: peer, Dst: host, Proto: 6, Sport: 40000, Dport: 443}
	out := bpf.Packet{Src: host, Dst: peer, Proto: 6, Sport: 443, Dport: 40000}
	for range 3 {
		for _, p := range []struct {
			prog *ebpf.Program
			pkt  bpf.Packet
		}{{objs.PciIngress, in}, {objs.PciEgress, out}} {
			if ret, err := p.prog.Run(&ebpf.RunOptions{Data: p.pkt.Frame()}); err != nil || ret != 0xffffffff {
				t.Fatalf("a packet of the allowed flow: %v, %#x", err, ret)
			}
		}
	}
	if body := gather(t, m); !strings.Contains(body, `pci_segment_policy_packets_total{policy="web"} 6`+"\n") {
		t.Errorf("want the flow's 6 packets counted for web:\n%s", body)
	}
}
