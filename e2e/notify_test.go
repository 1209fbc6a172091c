package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/lab"
)

// The loader speaks systemd's notify protocol as a Type=notify service
// does: READY only once a policy is applied and attached, RELOADING and
// READY around a reload, WATCHDOG pings while the worker says it is
// alive, STOPPING at the end. systemd's side is a datagram socket here.
func TestLoaderNotifiesSystemd(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	sock, msgs := datagrams(t)
	next := func(want string, within time.Duration) string {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed before %q", want)
				}
				if strings.Contains(m, want) {
					return m
				}
				if !strings.Contains(m, "WATCHDOG=1") {
					t.Errorf("notification %q while waiting for %q", m, want)
				}
			case <-deadline:
				t.Fatalf("no %q within %v", want, within)
			}
		}
	}

	dir := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := newEnforcer(t, l, dir, enforceOpts{env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=30000000"}})
	e.start(t)
	ready := next("READY=1", 30*time.Second)
	// The loader logs "enforcing" before it notifies; its output reaches
	// this test through a pipe, a moment later.
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(e.out.String(), "enforcing:") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(e.out.String(), "enforcing:") {
		t.Errorf("READY came before the loader was enforcing:\n%s", e.out.String())
	}
	if !strings.Contains(ready, "STATUS=enforcing policy generation 1") {
		t.Errorf("first READY %q does not give the generation in force", ready)
	}

	e.cmd.Process.Signal(syscall.SIGHUP)
	reloading := next("RELOADING=1", 10*time.Second)
	if !strings.Contains(reloading, "MONOTONIC_USEC=") {
		t.Errorf("RELOADING %q lacks MONOTONIC_USEC, which Type=notify-reload needs", reloading)
	}
	if m := next("READY=1", 10*time.Second); !strings.Contains(m, "generation 2") {
		t.Errorf("READY after the reload %q, want generation 2", m)
	}

	// A refused reload with several findings: READY again, its STATUS one
	// line. A line break would start another assignment, which the
	// worker's words must never make (MAINPID=, FDSTORE=).
	replaceFile(t, filepath.Join(dir, "cde.yaml"), strings.Replace(strings.Replace(labPolicy, "port: 443", "port: 70000", 1),
		"10.77.1.0/24", "10.77.1.0/33", 1))
	refused := next("reload refused", 10*time.Second)
	for _, line := range strings.Split(refused, "\n") {
		if !strings.HasPrefix(line, "READY=1") && !strings.HasPrefix(line, "STATUS=") {
			t.Errorf("the refusal's notification carries a line %q beyond READY and STATUS:\n%s", line, refused)
		}
	}
	if !strings.Contains(refused, "and more") {
		t.Errorf("the refusal's status %q does not say there is more in the log", refused)
	}

	// The worker says it is alive every 10 seconds.
	next("WATCHDOG=1", 15*time.Second)

	e.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1", 10*time.Second)
}
