package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/lab"
)

// What the worker exposes in the lab: the policy and links in force, its
// own privilege state as /proc has it, the overrides; and /readyz ready
// once a policy is applied on an attached link.
func TestMetricsAndReadinessTellTheTruth(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}), enforceOpts{})
	var scrape string
	for i := 0; i < 50 && !strings.Contains(scrape, "pci_segment_enforcing{"); i++ {
		scrape = e.scrape(t)
	}
	for series, want := range map[string]float64{
		`pci_segment_enforcing{interface="` + l.HostIf + `"}`:                   1,
		"pci_segment_policies":                                                  1,
		"pci_segment_rules":                                                     2,
		"pci_segment_worker_effective_capabilities":                             0,
		"pci_segment_worker_seccomp_mode":                                       2,
		"pci_segment_worker_no_new_privs":                                       1,
		`pci_segment_override_in_effect{override="PCI_SEGMENT_PRIVILEGE_USER"}`: 1,
		"pci_segment_monitor_mode":                                              0,
	} {
		if got := metricValue(t, scrape, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := metricValue(t, scrape, `pci_segment_map_capacity_entries{map="conntrack"}`); got != 2*32768 {
		t.Errorf("conntrack capacity %v, want twice --max-flows (32768)", got)
	}
	listen(t, l, l.HostNS, ap(l.Host4, 443))
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	if got := metricValue(t, e.scrape(t), "pci_segment_conntrack_entries"); got < 1 {
		t.Errorf("%v connections tracked after one was made", got)
	}
	if !strings.Contains(scrape, "go_build_info{") {
		t.Error("no build info")
	}
	if body, code := e.get(t, "/readyz"); code != 200 || !strings.Contains(body, l.HostIf) {
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
