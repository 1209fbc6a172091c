package e2e

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/testenv"
)

// A real Prometheus (Debian's) in the lab's host namespace scrapes the
// worker every second; the denied-packet count it then answers through
// its HTTP API grows by exactly the denied packets the test sent.
func TestARealPrometheusCountsTheDeniedPackets(t *testing.T) {
	requireRoot(t)
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		testenv.Unavailable(t, "prometheus not installed (Debian package prometheus)")
	}
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(`global: {scrape_interval: 1s}
scrape_configs:
  - job_name: pci-segment
    static_configs: [{targets: ["127.0.0.1:9720"]}]
`), 0o644)
	p := l.Command(l.HostNS, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:9090", "--log.level=warn")
	out := &syncBuffer{}
	p.Stdout, p.Stderr = out, out
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Process.Kill()
		p.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})

	query := func(q string) (float64, bool) {
		body, code, err := e.tryGet("http://127.0.0.1:9090/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &r) != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	const denied = `sum(pci_segment_packets_total{job="pci-segment",direction="ingress",verdict="deny"})`
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20s", what)
			}
		}
	}
	// Up, and the count steady over two scrapes.
	var before float64
	waitFor("prometheus scraping the worker", func() bool {
		v, ok := query(denied)
		if !ok {
			return false
		}
		time.Sleep(2500 * time.Millisecond)
		w, ok := query(denied)
		before = w
		return ok && w == v
	})

	const sent = 50
	err = l.Do(l.PeerNS, func() error {
		c, err := net.Dial("udp", ap(l.Host4, 9999).String())
		if err != nil {
			return err
		}
		defer c.Close()
		for range sent {
			c.Write([]byte("x"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var after float64
	waitFor("the denied packets in prometheus", func() bool {
		after, _ = query(denied)
		return after >= before+sent
	})
	time.Sleep(2 * time.Second) // one more scrape: nothing beyond what was sent
	if after, _ = query(denied); after != before+sent {
		t.Errorf("prometheus counts %v denied packets since the start, want exactly the %d sent", after-before, sent)
	}
}
