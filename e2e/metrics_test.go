package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/testenv"
)

// What the worker exposes in the lab: the policy and links in force, its
// own privilege state as /proc has it, the overrides; and /readyz ready
// once a policy is applied on an attached link.
func TestMetricsAndReadinessTellTheTruth(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	// Without a syslog socket the seals go nowhere, and the metrics say so.
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{args: []string{"--syslog", ""}})
	var scrape string
	for i := 0; i < 50 && !strings.Contains(scrape, "pci_segment_enforcing{"); i++ {
		scrape = e.scrape(t)
	}
	for series, want := range map[string]float64{
		`pci_segment_enforcing{direction="egress",interface="` + l.HostIf + `"}`: 1,
		"pci_segment_policies":                                                  1,
		"pci_segment_rules":                                                     2,
		"pci_segment_worker_effective_capabilities":                             0,
		"pci_segment_worker_seccomp_mode":                                       2,
		"pci_segment_worker_no_new_privs":                                       1,
		`pci_segment_override_in_effect{override="PCI_SEGMENT_PRIVILEGE_USER"}`: 1,
		"pci_segment_monitor_mode":                                              0,
		"pci_segment_audit_seals_copied":                                        0,
	} {
		if got := metricValue(t, scrape, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := metricValue(t, scrape, `pci_segment_policy_map_entries{map="addr4"}`); got < 1 {
		t.Errorf("the set in force takes %v IPv4 prefix entries, want some", got)
	}
	if got := metricValue(t, scrape, `pci_segment_map_capacity_entries{map="conntrack"}`); got != 2*32768 {
		t.Errorf("conntrack capacity %v, want twice --max-flows (32768)", got)
	}
	listen(t, l, l.HostNS, ap(l.Host4, 443))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	if got := metricValue(t, e.scrape(t), "pci_segment_conntrack_entries"); got < 1 {
		t.Errorf("%v connections tracked after one was made", got)
	}
	// The lab worker's own scrape, through promtool.
	if tool, err := exec.LookPath("promtool"); err != nil {
		testenv.Unavailable(t, "promtool not installed (Debian package prometheus)")
	} else {
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = strings.NewReader(scrape)
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("promtool check metrics on the worker's scrape: %v\n%s", err, out)
		}
	}
	if !strings.Contains(scrape, "go_build_info{") {
		t.Error("no build info")
	}
	if body, code := e.ready(t); code != 200 || !strings.Contains(body, l.HostIf) {
		t.Errorf("/readyz: %d %q, want 200 naming %s", code, body, l.HostIf)
	}
	if body, code := e.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %q", code, body)
	}
}

// Socket activation: the metrics socket systemd passes (LISTEN_FDS, fd 3)
// reaches the worker through the loader, and the worker listens on nothing
// of its own.
func TestTheWorkerServesOnTheSocketSystemdPassed(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	var ln *net.TCPListener
	err := l.Do(l.HostNS, func() (err error) {
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9721})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	// systemd sets LISTEN_PID to the service's pid: a shell that execs
	// the loader has it.
	args := e.cmd.Args
	e.cmd.Args = append(append(append([]string{}, args[:3]...), "sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`), args[3:]...)
	e.cmd.ExtraFiles = []*os.File{f}
	e.start(t)
	e.waitEnforcing(t)
	f.Close()

	if body, code := e.getURL(t, "http://127.0.0.1:9721/metrics"); code != 200 || !strings.Contains(body, "pci_segment_policy_generation 1") {
		t.Errorf("the handed socket serves %d:\n%.300s", code, body)
	}
	if _, _, err := e.tryGet("http://127.0.0.1:9720/metrics"); err == nil {
		t.Error("the worker also listens on --metrics-addr")
	}
	_, worker := e.pids(t)
	tcp, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", worker))
	listening := 0
	for _, line := range strings.Split(string(tcp), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 3 && f[3] == "0A" {
			listening++
		}
	}
	if listening != 1 {
		t.Errorf("%d listening TCP sockets in the lab's host namespace, want the handed one alone", listening)
	}
}

// TLS and basic authentication through the exporter-toolkit web
// configuration file, as other exporters take it: a scrape over HTTPS with
// the password answers, one without it is refused, plain HTTP is not
// served.
func TestMetricsOverTLSWithBasicAuth(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	dir := worldDir(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pci-segment"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	cfg := filepath.Join(dir, "web.yml")
	os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o644)

	startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{args: []string{"--web-config-file", cfg}})
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	get := func(url, user, pass string) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = l.Do(l.HostNS, func() error {
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			}}
		req, _ := http.NewRequest("GET", url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get("https://127.0.0.1:9720/metrics", "prometheus", "s3cret"); err != nil || code != 200 {
		t.Errorf("HTTPS with the password: %d, %v", code, err)
	}
	if code, err := get("https://127.0.0.1:9720/metrics", "", ""); err != nil || code != 401 {
		t.Errorf("HTTPS without the password: %d, %v; want 401", code, err)
	}
	if code, err := get("https://127.0.0.1:9720/metrics", "prometheus", "wrong"); err != nil || code != 401 {
		t.Errorf("HTTPS with a wrong password: %d, %v; want 401", code, err)
	}
	if code, err := get("http://127.0.0.1:9720/metrics", "prometheus", "s3cret"); err == nil && code == 200 {
		t.Error("plain HTTP is served")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
