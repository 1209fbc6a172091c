package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Action is what a filter does with a system call.
type Action uint8

// The zero Action is invalid, so that a table entry without one is an error
// rather than a silent allow.
const (
	// Kill stops the call from running and ends the whole process: the
	// filter answers SECCOMP_RET_TRAP, and the SIGSYS handler [Install]
	// sets up names the call on stderr and exits with
	// [ViolationExitStatus] (see [ParseViolation]).
	Kill Action = iota + 1
	// Allow lets the call run.
	Allow
	// Errno stops the call from running and returns the rule's errno.
	Errno
)

func (a Action) String() string {
	switch a {
	case Kill:
		return "kill"
	case Allow:
		return "allow"
	case Errno:
		return "errno"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Cond is a condition on one argument of a call. Make one with [In],
// [NotIn], [AnyBit] or [Masked].
type Cond struct {
	// Arg is the argument's 0-based position.
	Arg    uint
	op     condOp
	values []uint32 // In, NotIn
	mask   uint64   // AnyBit, Masked
	value  uint64   // Masked
}

type condOp uint8

const (
	opIn condOp = iota + 1
	opNotIn
	opAnyBit
	opMasked
)

// In holds when the argument's low 32 bits equal one of values. The kernel
// truncates an int parameter the same way, so the upper half of the
// register never decides: a plain 64-bit equality would let cmd|1<<32 past
// a check for cmd.
func In(arg uint, values ...uint32) Cond {
	return Cond{Arg: arg, op: opIn, values: slices.Clone(values)}
}

// NotIn holds when the argument's low 32 bits equal none of values.
func NotIn(arg uint, values ...uint32) Cond {
	return Cond{Arg: arg, op: opNotIn, values: slices.Clone(values)}
}

// AnyBit holds when the argument has at least one bit of mask set.
func AnyBit(arg uint, mask uint64) Cond {
	return Cond{Arg: arg, op: opAnyBit, mask: mask}
}

// Masked holds when arg&mask == value: Masked(a, m, 0) says "none of the
// bits of m", Masked(a, m|b, b) "b and none of m".
func Masked(arg uint, mask, value uint64) Cond {
	return Cond{Arg: arg, op: opMasked, mask: mask, value: value}
}

func (c Cond) String() string {
	nums := func(vs []uint32) string {
		s := make([]string, len(vs))
		for i, v := range vs {
			s[i] = fmt.Sprintf("%#x", v)
		}
		return "{" + strings.Join(s, ", ") + "}"
	}
	switch c.op {
	case opIn:
		return fmt.Sprintf("(u32)arg%d in %s", c.Arg, nums(c.values))
	case opNotIn:
		return fmt.Sprintf("(u32)arg%d not in %s", c.Arg, nums(c.values))
	case opAnyBit:
		return fmt.Sprintf("arg%d & %#x != 0", c.Arg, c.mask)
	case opMasked:
		return fmt.Sprintf("arg%d & %#x == %#x", c.Arg, c.mask, c.value)
	}
	return "invalid condition"
}

// alternatives returns the masked comparisons (mask, value) of which any
// one makes c hold.
func (c Cond) alternatives() [][2]uint64 {
	var out [][2]uint64
	switch c.op {
	case opIn:
		for _, v := range c.values {
			out = append(out, [2]uint64{0xffffffff, uint64(v)})
		}
	case opNotIn:
		for _, b := range complementBlocks(c.values) {
			out = append(out, [2]uint64{uint64(b.mask), uint64(b.value)})
		}
	case opAnyBit:
		for bit := uint64(1); bit != 0; bit <<= 1 {
			if c.mask&bit != 0 {
				out = append(out, [2]uint64{bit, bit})
			}
		}
	case opMasked:
		out = append(out, [2]uint64{c.mask, c.value})
	}
	return out
}

// holds evaluates c on a raw argument, as the compiled filter would.
func (c Cond) holds(arg uint64) bool {
	for _, a := range c.alternatives() {
		if arg&a[0] == a[1] {
			return true
		}
	}
	return false
}

func (c Cond) validate() error {
	switch {
	case c.Arg > 5:
		return fmt.Errorf("argument %d out of range", c.Arg)
	case (c.op == opIn || c.op == opNotIn) && len(c.values) == 0:
		return fmt.Errorf("arg%d: no values", c.Arg)
	case c.op == opAnyBit && c.mask == 0:
		return fmt.Errorf("arg%d: empty mask", c.Arg)
	case c.op == opMasked && c.value&^c.mask != 0:
		return fmt.Errorf("arg%d: value %#x has bits outside mask %#x, so it never matches", c.Arg, c.value, c.mask)
	case c.op < opIn || c.op > opMasked:
		return fmt.Errorf("arg%d: condition made without In, NotIn, AnyBit or Masked", c.Arg)
	}
	return nil
}

// Rule is one entry of a policy: calls to Syscall whose arguments meet all
// of Args get Action.
type Rule struct {
	Syscall string
	Action  Action
	// Errno is what the call returns under [Errno]: EPERM for a plain
	// refusal; ENOSYS where the caller falls back to another call only on
	// that (glibc's pthread_create retries clone3 as clone only then).
	Errno unix.Errno
	// Args are conditions on the arguments, all of which must hold; none
	// means every call. At most one per argument.
	Args []Cond
	// Why says why the call is needed (an allow) or what it would let a
	// compromised worker do (a refusal).
	Why string
}

func (r Rule) validate(def Action) error {
	switch {
	case r.Syscall == "":
		return errors.New("no syscall name")
	case r.Why == "":
		return fmt.Errorf("%s: no reason given", r.Syscall)
	case r.Action < Kill || r.Action > Errno:
		return fmt.Errorf("%s: no action", r.Syscall)
	case r.Action == def:
		// libseccomp refuses such a rule, and it would say nothing.
		return fmt.Errorf("%s: action %s is the policy's default", r.Syscall, r.Action)
	case r.Action == Errno && (r.Errno == 0 || r.Errno > 4095):
		return fmt.Errorf("%s: errno %d out of range", r.Syscall, r.Errno)
	case r.Action != Errno && r.Errno != 0:
		return fmt.Errorf("%s: errno %d given for action %s", r.Syscall, r.Errno, r.Action)
	}
	seen := map[uint]bool{}
	for _, c := range r.Args {
		if err := c.validate(); err != nil {
			return fmt.Errorf("%s: %w", r.Syscall, err)
		}
		if seen[c.Arg] {
			return fmt.Errorf("%s: two conditions on arg%d", r.Syscall, c.Arg)
		}
		seen[c.Arg] = true
	}
	return nil
}

// matches reports whether a call with these arguments meets all of r.Args.
func (r Rule) matches(args [6]uint64) bool {
	for _, c := range r.Args {
		if !c.holds(args[c.Arg]) {
			return false
		}
	}
	return true
}

func (r Rule) clone() Rule {
	r.Args = slices.Clone(r.Args)
	for i, c := range r.Args {
		r.Args[i].values = slices.Clone(c.values)
	}
	return r
}

// Policy is a whole filter: rules read top to bottom by an auditor, and
// what every call no rule matches gets. Rules for one syscall must not
// overlap: no call may meet the conditions of two of them.
type Policy struct {
	// Name says which policy this is, for logs and status.
	Name string
	// Default is Kill for an allowlist and Allow for a denylist.
	Default Action
	Rules   []Rule
}

func (p Policy) validate() error {
	if p.Default != Kill && p.Default != Allow {
		return fmt.Errorf("policy %q: default action %s, want kill or allow", p.Name, p.Default)
	}
	for i, r := range p.Rules {
		if err := r.validate(p.Default); err != nil {
			return fmt.Errorf("policy %q rule %d: %w", p.Name, i, err)
		}
		for j, q := range p.Rules[:i] {
			if q.Syscall == r.Syscall && overlap(q, r) {
				return fmt.Errorf("policy %q rules %d and %d: some %s calls meet both", p.Name, j, i, r.Syscall)
			}
		}
	}
	return nil
}

// overlap reports whether some call meets the conditions of both a and b.
// Two masked comparisons can both hold exactly when they agree on the bits
// both look at; an argument only one rule constrains never separates them.
func overlap(a, b Rule) bool {
	for _, ca := range a.Args {
		for _, cb := range b.Args {
			if ca.Arg != cb.Arg {
				continue
			}
			compatible := false
			for _, x := range ca.alternatives() {
				for _, y := range cb.alternatives() {
					if x[1]&y[0] == y[1]&x[0] {
						compatible = true
					}
				}
			}
			if !compatible {
				return false
			}
		}
	}
	return true
}

// verdict returns what p does with a native call, as the compiled filter
// should: the action of the rule that matches (rules do not overlap), or
// the default. It is the reference the tests hold the compiled filter to.
func (p Policy) verdict(syscall string, args [6]uint64) (Action, unix.Errno) {
	for _, r := range p.Rules {
		if r.Syscall == syscall && r.matches(args) {
			return r.Action, r.Errno
		}
	}
	return p.Default, 0
}

// Syscalls returns the names p has rules for, in table order, once each.
func (p Policy) Syscalls() []string {
	var out []string
	for _, r := range p.Rules {
		if !slices.Contains(out, r.Syscall) {
			out = append(out, r.Syscall)
		}
	}
	return out
}

func (p Policy) clone() Policy {
	p.Rules = slices.Clone(p.Rules)
	for i, r := range p.Rules {
		p.Rules[i] = r.clone()
	}
	return p
}
