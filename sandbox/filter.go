package sandbox

import (
	"errors"
	"fmt"
	"os"

	seccomp "github.com/seccomp/libseccomp-golang"

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

// Report says how a rule table became a filter.
type Report struct {
	// Rules is the number of libseccomp rules added: one per plain entry,
	// one per masked block for an entry with Unless.
	Rules int
	// Skipped lists the entries libseccomp has no number for on this
	// architecture: a syscall newer than the library, or one this
	// architecture lacks. Nothing refuses those calls, so the caller should
	// log the list; if the running kernel has such a syscall, the gap is
	// real and the fix is a newer libseccomp.
	Skipped []string
}

// Install turns rules into an allow-by-default filter and installs it on
// every thread of the process (TSYNC), setting NoNewPrivs as the kernel
// requires of an unprivileged caller. Afterwards it checks that every
// thread in /proc/self/task reports seccomp mode 2; the filter cannot be
// removed, so an error after that point still leaves it installed.
func Install(rules []Rule) (Report, error) {
	f, report, err := build(rules)
	if err != nil {
		return report, err
	}
	defer f.Release()
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

// build compiles rules without loading them. The caller releases the filter.
func build(rules []Rule) (*seccomp.ScmpFilter, Report, error) {
	var report Report
	for i, r := range rules {
		if err := r.validate(); err != nil {
			return nil, report, fmt.Errorf("seccomp rule %d: %w", i, err)
		}
	}

	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return nil, report, fmt.Errorf("create seccomp filter: %w", err)
	}
	// A 32-bit (int 0x80) or x32 call would bypass every rule, which are
	// written in x86_64 numbers. The worker makes none, so one is an attack.
	if err := f.SetBadArchAction(seccomp.ActKillProcess); err != nil {
		f.Release()
		return nil, report, fmt.Errorf("set seccomp bad-arch action: %w", err)
	}
	for _, r := range rules {
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

func (r Rule) validate() error {
	switch {
	case r.Syscall == "":
		return errors.New("no syscall name")
	case r.Errno == 0:
		return fmt.Errorf("%s: no errno", r.Syscall)
	case r.Errno > 4095:
		return fmt.Errorf("%s: errno %d out of range", r.Syscall, r.Errno)
	case r.Why == "":
		return fmt.Errorf("%s: no reason given", r.Syscall)
	case r.Unless != nil && r.Unless.Arg > 5, r.When != nil && r.When.Arg > 5, r.WhenAnyBit != nil && r.WhenAnyBit.Arg > 5:
		return fmt.Errorf("%s: argument out of range", r.Syscall)
	case (r.Unless != nil && r.When != nil) || (r.WhenAnyBit != nil && (r.Unless != nil || r.When != nil)):
		return fmt.Errorf("%s: more than one argument condition", r.Syscall)
	}
	return nil
}

// conditions returns the alternatives (any one refuses the call) as masked
// comparisons; nil means refuse every call.
func (r Rule) conditions() [][3]uint64 {
	var out [][3]uint64 // arg, mask, value
	switch {
	case r.Unless != nil:
		for _, b := range complementBlocks(r.Unless.Values) {
			out = append(out, [3]uint64{uint64(r.Unless.Arg), uint64(b.mask), uint64(b.value)})
		}
	case r.When != nil:
		for _, v := range r.When.Values {
			out = append(out, [3]uint64{uint64(r.When.Arg), 0xffffffff, uint64(v)})
		}
	case r.WhenAnyBit != nil:
		for bit := uint64(1); bit != 0; bit <<= 1 {
			if r.WhenAnyBit.Mask&bit != 0 {
				out = append(out, [3]uint64{uint64(r.WhenAnyBit.Arg), bit, bit})
			}
		}
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
	action := seccomp.ActErrno.SetReturnCode(int16(r.Errno))

	conds := r.conditions()
	if conds == nil {
		if err := f.AddRuleExact(nr, action); err != nil {
			return 0, fmt.Errorf("add seccomp rule for %s: %w", r.Syscall, err)
		}
		return 1, nil
	}
	for _, c := range conds {
		// libseccomp compares (arg & mask) == value on all 64 bits; the
		// masks' upper halves are zero for int arguments, so the upper
		// half of the register never matters, as in the kernel.
		cond, err := seccomp.MakeCondition(uint(c[0]), seccomp.CompareMaskedEqual, c[1], c[2])
		if err != nil {
			return 0, fmt.Errorf("seccomp condition for %s: %w", r.Syscall, err)
		}
		if err := f.AddRuleConditionalExact(nr, action, []seccomp.ScmpCondition{cond}); err != nil {
			return 0, fmt.Errorf("add seccomp rule for %s (arg %d & %#x == %#x): %w", r.Syscall, c[0], c[1], c[2], err)
		}
	}
	return len(conds), nil
}
