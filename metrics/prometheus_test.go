package metrics

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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

func TestAScrapePassesPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	m := New(counters(t))
	m.Enforcing.WithLabelValues("eth0").Set(1)
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
