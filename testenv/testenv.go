// Package testenv decides whether a test that needs the real kernel may run.
//
// Tests that need root (creating BPF maps, installing seccomp filters) skip
// with a reason on a developer's machine. In the end-to-end job, which sets
// PCI_SEGMENT_E2E=1, a skip would let a broken guarantee pass unnoticed, so
// the same condition fails the test instead.
package testenv

import (
	"os"
	"strconv"
	"testing"

	"github.com/pci-segment/pci-segment/envflag"
)

// E2EEnv is the environment variable that turns skips into failures.
const E2EEnv = "PCI_SEGMENT_E2E"

// E2E reports whether the end-to-end job is running. A value that
// [envflag.ParseBool] rejects counts as set: a typo must make tests fail,
// not skip.
func E2E() bool {
	on, err := envflag.Bool(E2EEnv)
	return on || err != nil
}

// Unavailable skips t with reason, or fails it when [E2E] is set.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if _, err := envflag.Bool(E2EEnv); err != nil {
		t.Fatal(err)
	}
	if E2E() {
		t.Fatalf("%s (%s is set, so this is a failure, not a skip)", reason, E2EEnv)
	}
	t.Skip(reason)
}

// RequireRoot skips t unless the effective uid is 0, or fails it when [E2E]
// is set.
func RequireRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		Unavailable(t, "needs root (effective uid is "+strconv.Itoa(euid)+")")
	}
}
