// Package mac checks, in each process after its privilege drop, that the
// kernel confines it as the hardening guide's mandatory access control layer
// expects: the SELinux domain and the AppArmor profile named in the
// environment, read from the kernel's current state (never from
// configuration files, which can say enforcing on a host whose kernel has no
// SELinux at all).
//
// PCI_SEGMENT_SELINUX_PROFILE and PCI_SEGMENT_APPARMOR_PROFILE name the
// loader's domain and profile; PCI_SEGMENT_WORKER_SELINUX_PROFILE and
// PCI_SEGMENT_WORKER_APPARMOR_PROFILE the worker's, which default to
// pci_segment_worker_t and pci-segment//worker when the loader's is set.
// Nothing named, nothing is checked. Enforcing (enforce) passes, permissive
// (complain) is a warning, anything else an error pointing to the guide.
// PCI_SEGMENT_SKIP_MAC_VERIFY=1 skips the check with a warning; the worker
// audits it as an override.
package mac

import (
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/apparmor"
	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/selinux"
)

// SkipEnv skips the check (development only).
const SkipEnv = "PCI_SEGMENT_SKIP_MAC_VERIFY"

// The worker's domain and profile when only the loader's are named.
const (
	WorkerDomain  = "pci_segment_worker_t"
	WorkerProfile = "pci-segment//worker"
)

// Expect is what a process must run under; "" expects nothing.
type Expect struct {
	Process  string // "loader" or "worker", for messages
	SELinux  string // domain (type)
	AppArmor string // profile
}

// Loader is what the environment expects of the loader.
func Loader() Expect {
	return Expect{Process: "loader", SELinux: os.Getenv("PCI_SEGMENT_SELINUX_PROFILE"), AppArmor: os.Getenv("PCI_SEGMENT_APPARMOR_PROFILE")}
}

// Worker is what the environment expects of the worker.
func Worker() Expect {
	e := Expect{Process: "worker", SELinux: os.Getenv("PCI_SEGMENT_WORKER_SELINUX_PROFILE"), AppArmor: os.Getenv("PCI_SEGMENT_WORKER_APPARMOR_PROFILE")}
	l := Loader()
	if e.SELinux == "" && l.SELinux != "" {
		e.SELinux = WorkerDomain
	}
	if e.AppArmor == "" && l.AppArmor != "" {
		e.AppArmor = WorkerProfile
	}
	return e
}

// Kernel is where the labels come from; the tests give their own.
type Kernel struct {
	SELinux  selinux.Source
	AppArmor func() (string, error) // the current label, as apparmor.Current
}

// Running is the kernel under this process.
var Running = Kernel{SELinux: selinux.Kernel{}, AppArmor: apparmor.Current}

// Result is what Check found.
type Result struct {
	Process  string
	Skipped  bool     // SkipEnv was set
	Verified []string // each module checked, for the log
	Warnings []string // permissive or complain
}

// Log tells the operator what Check found.
func (r Result) Log(log hclog.Logger) {
	switch {
	case r.Skipped:
		log.Warn("development override in effect: SELinux and AppArmor confinement not verified", "process", r.Process, SkipEnv, "1")
	case len(r.Verified) > 0:
		log.Info("mandatory access control verified", "process", r.Process, "confinement", strings.Join(r.Verified, ", "))
	}
	for _, w := range r.Warnings {
		log.Warn("mandatory access control not enforcing", "process", r.Process, "detail", w)
	}
}

// Check verifies e against k. The error names the process, what it runs
// under and the guide's section; nothing expected is no error.
func Check(e Expect, k Kernel) (Result, error) {
	r := Result{Process: e.Process}
	skip, err := envflag.Bool(SkipEnv)
	if err != nil {
		return r, err
	}
	if skip {
		r.Skipped = true
		return r, nil
	}
	if e.SELinux != "" {
		warn, err := selinux.Verify(e.SELinux, k.SELinux)
		if err != nil {
			return r, fmt.Errorf("%s: %w", e.Process, err)
		}
		r.Verified = append(r.Verified, "selinux "+e.SELinux)
		if warn != "" {
			r.Warnings = append(r.Warnings, warn)
		}
	}
	if e.AppArmor != "" {
		cur, rerr := k.AppArmor()
		warn, err := apparmor.Verify(e.AppArmor, cur, rerr)
		if err != nil {
			return r, fmt.Errorf("%s: %w", e.Process, err)
		}
		r.Verified = append(r.Verified, "apparmor "+e.AppArmor)
		if warn != "" {
			r.Warnings = append(r.Warnings, warn)
		}
	}
	return r, nil
}
