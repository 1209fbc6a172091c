package e2e

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/confine"
	"github.com/pci-segment/pci-segment/lab"
)

// Landlock on the real worker, which applies confine.Worker before its
// seccomp filter and reports what it applied with confine.WriteReport in
// its state directory.
//
// What the rules refuse (writing outside the audit and state directories,
// binding another port, connecting, executing) is shown by behaviour in
// package confine, whose tests run confine.Worker in a child process as an
// unprivileged uid, under the worker's seccomp filter too: the real worker
// offers no way to make it try. Here the report is checked against the
// instance, and one refusal is seen from outside: a policy file that is a
// symbolic link to a file outside the policy directory cannot be read.

// requireWorkerReport returns the Landlock report of e's running worker,
// failing the test when there is none.
func requireWorkerReport(t *testing.T, e *enforcer, workerPID int) confine.Report {
	t.Helper()
	var r confine.Report
	var err error
	// The worker writes it before reading the policies, so it exists by
	// the time enforce reports enforcing; allow for a slow file system.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if r, err = confine.ReadReport(e.stateDir); err == nil && r.PID == workerPID {
			return r
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the worker wrote no Landlock report in %s", e.stateDir)
	}
	t.Fatalf("Landlock report in %s: %+v, %v; want one written by the worker, pid %d", e.stateDir, r, err, workerPID)
	return r
}

func TestWorkerReportsItsLandlockRules(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	policies := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	e := startEnforcing(t, l, policies, enforceOpts{})
	_, workerPID := e.pids(t)
	ids, err := userIDs(e.user)
	if err != nil {
		t.Fatal(err)
	}

	r := requireWorkerReport(t, e, workerPID)
	if r.UID != int(ids[0]) || r.ABI < 4 || !r.Enforced || !r.Filesystem || !r.Network {
		t.Errorf("report %+v; want uid %d, file system and TCP restricted (kernel Landlock ABI 4 or newer)", r, ids[0])
	}
	grants := map[string]string{}
	for _, g := range r.Paths {
		grants[g.Path] = g.Access
	}
	for path, access := range map[string]string{policies: "read", e.auditDir: "read-write", e.stateDir: "read-write"} {
		if grants[path] != access {
			t.Errorf("grant for %s is %q, want %q (grants %v)", path, grants[path], access, grants)
		}
	}
	for path, access := range grants {
		if access == "read-write" && path != e.auditDir && path != e.stateDir {
			t.Errorf("the worker may write %s", path)
		}
	}
	if len(r.BindTCP) != 1 || r.BindTCP[0].Port != 9720 || len(r.ConnectTCP) != 0 {
		t.Errorf("bind %v connect %v; want the metrics port 9720 only, no connect", r.BindTCP, r.ConnectTCP)
	}
	st, err := os.Stat(filepath.Join(e.stateDir, confine.ReportFile))
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("report file: %v, %v; want mode 0644", st, err)
	}

	s := statusOf(t, e, 0, 0)
	if s.Landlock == nil || !s.Landlock.Current || s.Landlock.Report == nil || s.Landlock.Report.PID != workerPID ||
		!s.Landlock.Report.Filesystem || !s.Landlock.Report.Network {
		t.Errorf("status shows Landlock %+v; want the running worker's report", s.Landlock)
	}
	for _, u := range s.Unavailable {
		t.Errorf("root could not read %s: %s", u.What, u.Reason)
	}
	for _, f := range s.Findings {
		if strings.Contains(f, "Landlock") {
			t.Errorf("finding: %s", f)
		}
	}
}

func TestWorkerCannotReadAPolicyLinkedFromOutside(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	// Readable by the service account through file modes; only Landlock
	// keeps the worker out of the directory it lives in.
	outside := policyDir(t, map[string]string{"cde.yaml": labPolicy})
	policies := worldDir(t)
	if err := os.Symlink(filepath.Join(outside, "cde.yaml"), filepath.Join(policies, "cde.yaml")); err != nil {
		t.Fatal(err)
	}
	e := newEnforcer(t, l, policies, enforceOpts{})
	e.start(t)
	var err error
	deadline := time.After(30 * time.Second)
	for exited := false; !exited; {
		select {
		case err = <-e.exited:
			e.cmd.Process, exited = nil, true
		case <-deadline:
			t.Fatalf("enforce neither exited nor enforced:\n%s", e.out.String())
		case <-time.After(50 * time.Millisecond):
			if strings.Contains(e.out.String(), "enforcing:") {
				t.Fatalf("the worker read a policy linked from %s, outside its policy directory: Landlock is not applied\n%s",
					outside, e.out.String())
			}
		}
	}
	out := e.out.String()
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("enforce with a policy linked from %s: %v, want a refusal naming permission denied\n%s", outside, err, out)
	}
	if in, eg := tcxPrograms(t, l); in+eg != 0 {
		t.Errorf("%d ingress and %d egress programs attached after the refusal", in, eg)
	}
	if slices.Contains(pinsLeft(t, e.pinDir), filepath.Join(e.pinDir, bpf.Layout)) {
		t.Errorf("pins left in %s", e.pinDir)
	}
}
