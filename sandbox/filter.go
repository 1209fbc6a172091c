package sandbox

import (
	"errors"
	"fmt"
	"os"
	"slices"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/privilege"
)

// DisableEnv is the environment variable that, set to a true value, makes
// the worker run without its seccomp filter. It exists for debugging a
// refusal on a host; the worker must say loudly that it is unconfined.
const DisableEnv = "PCI_SEGMENT_DISABLE_SECCOMP"

// DisabledByEnv reports whether [DisableEnv] asks to skip the filter. Unset
// or empty means no; a value [envflag.ParseBool] rejects is an error, so a
// typo never turns the filter off or on by accident.
func DisabledByEnv() (bool, error) {
	return envflag.Bool(DisableEnv)
}

// Report says how a policy became a filter.
type Report struct {
	// Policy is the policy's name.
	Policy string
	// Rules is the number of libseccomp rules added: one per combination
	// of the masked comparisons an entry's conditions stand for.
	Rules int
	// Skipped lists the entries libseccomp has no number for on this
	// architecture: a syscall newer than the library, or one this
	// architecture lacks. Those calls get the policy's default (killed
	// under an allowlist, allowed under a denylist), so the caller should
	// log the list; if the running kernel has such a syscall and the
	// default is allow, the gap is real and the fix is a newer libseccomp.
	Skipped []string
}

// Install compiles p and installs it on every thread of the process
// (TSYNC), setting NoNewPrivs as the kernel requires of an unprivileged
// caller. Calls from another ABI (i386 int 0x80, x32) kill the process
// outright, since the rules are in native numbers. Before loading, it
// takes over SIGSYS so that a call p kills is named on stderr (see
// [ParseViolation]); the Go runtime must not handle SIGSYS afterwards, so
// the caller must not pass SIGSYS, or no signal at all, to signal.Notify,
// signal.Ignore or signal.Reset.
//
// Afterwards Install checks that every thread in /proc/self/task reports
// seccomp mode 2. The filter cannot be removed, so an error after loading
// still leaves it installed.
func Install(p Policy) (Report, error) {
	f, report, err := build(p)
	if err != nil {
		return report, err
	}
	defer f.Release()
	if err := installReporter(); err != nil {
		return report, err
	}
	if err := f.Load(); err != nil {
		return report, fmt.Errorf("load seccomp filter: %w", err)
	}
	threads, err := privilege.ReadThreads(os.Getpid())
	if err != nil {
		return report, fmt.Errorf("verify seccomp filter: %w", err)
	}
	for _, t := range threads {
		if t.Seccomp != privilege.SeccompFilter {
			return report, fmt.Errorf("verify seccomp filter: thread %d has seccomp mode %v after TSYNC", t.TID, t.Seccomp)
		}
	}
	return report, nil
}

// build compiles p without loading it. The caller releases the filter.
func build(p Policy) (*seccomp.ScmpFilter, Report, error) {
	report := Report{Policy: p.Name}
	if err := p.validate(); err != nil {
		return nil, report, err
	}
	f, err := seccomp.NewFilter(scmpAction(p.Default, 0))
	if err != nil {
		return nil, report, fmt.Errorf("create seccomp filter: %w", err)
	}
	// A 32-bit (int 0x80) or x32 call would be read against native
	// numbers. The worker makes none, so one is an attack: no report, no
	// handler, the process dies at once.
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		f.Release()
		return nil, report, fmt.Errorf("set seccomp bad-arch action: %w", err)
	}
	// A binary tree over the syscall numbers instead of a linear scan: the
	// allowlist has some 70 entries, and futex or read should not pay for
	// all of them. Before libseccomp 2.5 the scan is the only layout; the
	// verdicts are the same.
	var tooOld seccomp.VersionError
	if err := f.SetOptimize(2); err != nil && !errors.As(err, &tooOld) {
		f.Release()
		return nil, report, fmt.Errorf("set seccomp optimisation: %w", err)
	}
	for _, r := range p.Rules {
		n, err := r.add(f)
		if errors.Is(err, errUnknownSyscall) {
			report.Skipped = append(report.Skipped, r.Syscall)
			continue
		}
		if err != nil {
			f.Release()
			return nil, report, err
		}
		report.Rules += n
	}
	return f, report, nil
}

var errUnknownSyscall = errors.New("syscall unknown on this architecture")

func scmpAction(a Action, errno unix.Errno) seccomp.ScmpAction {
	switch a {
	case Allow:
		return seccomp.ActAllow
	case Errno:
		return seccomp.ActErrno.SetReturnCode(int16(errno))
	}
	// Kill: the reporter names the call, then ends the process.
	return seccomp.ActTrap
}

// comparisons returns the rule's conditions as libseccomp rules: each
// element is one conjunction of masked comparisons (arg, mask, value), and
// the rule applies when any one holds. Nil means the rule is
// unconditional.
func (r Rule) comparisons() [][][3]uint64 {
	if len(r.Args) == 0 {
		return nil
	}
	out := [][][3]uint64{nil}
	for _, c := range r.Args {
		var next [][][3]uint64
		for _, prefix := range out {
			for _, alt := range c.alternatives() {
				conj := append(slices.Clone(prefix), [3]uint64{uint64(c.Arg), alt[0], alt[1]})
				next = append(next, conj)
			}
		}
		out = next
	}
	return out
}

// add adds r to f and returns how many libseccomp rules that took.
func (r Rule) add(f *seccomp.ScmpFilter) (int, error) {
	nr, err := seccomp.GetSyscallFromName(r.Syscall)
	// A negative number is libseccomp's pseudo-number for a syscall that
	// exists on other architectures only.
	if errors.Is(err, seccomp.ErrSyscallDoesNotExist) || (err == nil && nr < 0) {
		return 0, errUnknownSyscall
	}
	if err != nil {
		return 0, fmt.Errorf("resolve syscall %s: %w", r.Syscall, err)
	}
	action := scmpAction(r.Action, r.Errno)

	conjs := r.comparisons()
	if conjs == nil {
		if err := f.AddRuleExact(nr, action); err != nil {
			return 0, fmt.Errorf("add seccomp rule for %s: %w", r.Syscall, err)
		}
		return 1, nil
	}
	for _, conj := range conjs {
		conds := make([]seccomp.ScmpCondition, len(conj))
		for i, c := range conj {
			// libseccomp compares (arg & mask) == value on all 64 bits;
			// the masks' upper halves are zero for int arguments, so the
			// upper half of the register never matters, as in the kernel.
			cond, err := seccomp.MakeCondition(uint(c[0]), seccomp.CompareMaskedEqual, c[1], c[2])
			if err != nil {
				return 0, fmt.Errorf("seccomp condition for %s: %w", r.Syscall, err)
			}
			conds[i] = cond
		}
		if err := f.AddRuleConditionalExact(nr, action, conds); err != nil {
			return 0, fmt.Errorf("add seccomp rule for %s %v: %w", r.Syscall, conj, err)
		}
	}
	return len(conjs), nil
}
