package sandbox

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/envflag"
)

// briefDenied is the deny list the worker's denylist was specified with,
// written out independently of the table so that deleting an entry fails.
var briefDenied = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "userfaultfd",
	"init_module", "finit_module", "delete_module",
	"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen",
	"fsconfig", "fsmount", "fspick", "mount_setattr",
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
	"setns", "unshare", "personality", "keyctl", "add_key", "request_key",
	"perf_event_open", "bpf", "chroot",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
	"setgroups", "capset", "iopl", "ioperm", "quotactl", "lookup_dcookie",
	"name_to_handle_at", "open_by_handle_at",
}

func TestWorkerDenylistListsEverySpecifiedSyscallOnce(t *testing.T) {
	p := WorkerDenylist()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range p.Rules {
		if seen[r.Syscall] {
			t.Errorf("%s listed twice", r.Syscall)
		}
		seen[r.Syscall] = true
		if r.Action != Errno {
			t.Errorf("%s: action %s in a denylist", r.Syscall, r.Action)
		}
	}
	for _, name := range briefDenied {
		if !seen[name] {
			t.Errorf("%s missing from the denylist", name)
		}
	}
}

// seenInTheWorker are the calls strace showed the real worker making after
// its filter was loaded, over the whole end-to-end suite, written out
// independently of the table so that deleting an entry fails.
var seenInTheWorker = []string{
	"accept4", "bind", "bpf", "clone", "clone3", "close", "epoll_create1",
	"epoll_ctl", "epoll_pwait", "eventfd2", "exit_group", "fcntl", "fstat",
	"futex", "getdents64", "getgid", "getpid", "getsockname", "getsockopt",
	"gettid", "getuid", "listen", "madvise", "mmap", "mprotect", "munmap",
	"nanosleep", "newfstatat", "openat", "pread64", "read", "recvfrom",
	"recvmsg", "rseq", "rt_sigprocmask", "rt_sigreturn", "sched_getaffinity",
	"sched_yield", "sendmsg", "sendto", "set_robust_list", "setsockopt",
	"sigaltstack", "socket", "statfs", "tgkill", "uname", "write",
}

// mustKill are calls no condition may let through the allowlist.
var mustKill = []string{
	"execve", "execveat", "fork", "vfork",
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
	"setfsuid", "setfsgid", "setgroups", "capset", "prlimit64",
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "pidfd_open",
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"unshare", "setns", "keyctl", "add_key", "request_key",
	"io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
	"perf_event_open", "init_module", "finit_module", "delete_module",
	"kexec_load", "kexec_file_load", "reboot", "personality", "seccomp",
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
	"memfd_create", "memfd_secret", "pkey_mprotect", "mremap", "remap_file_pages",
	"socketpair", "name_to_handle_at", "open_by_handle_at",
	"iopl", "ioperm", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
	"lookup_dcookie", "syslog", "settimeofday", "clock_settime", "adjtimex",
	"sethostname", "setdomainname", "mknodat", "linkat", "symlinkat",
	"mkdirat", "fchmodat", "fchownat", "fchown",
	"fchmod", "truncate", "chdir", "fchdir",
	// renameat, renameat2, unlinkat and ftruncate are allowed: audit
	// rotation, retention and a failed write's cut need them, and Landlock
	// keeps them to the audit and state directories.
}

func TestWorkerAllowlistCoversTheWorkerAndNothingDangerous(t *testing.T) {
	p := WorkerAllowlist()
	if err := p.validate(); err != nil {
		t.Fatal(err)
	}
	listed := p.Syscalls()
	for _, name := range seenInTheWorker {
		if !slices.Contains(listed, name) {
			t.Errorf("%s: the worker calls it, the allowlist kills it", name)
		}
	}
	for _, name := range mustKill {
		if slices.Contains(listed, name) {
			t.Errorf("%s is in the allowlist", name)
		}
	}
	if p.Default != Kill {
		t.Errorf("allowlist default %s, want kill", p.Default)
	}
	t.Logf("allowlist: %d entries, %d syscalls", len(p.Rules), len(listed))
}

func TestWorkerPolicySelectsByMode(t *testing.T) {
	for _, mode := range Modes() {
		p, err := WorkerPolicy(mode)
		if err != nil || p.Name != mode {
			t.Errorf("WorkerPolicy(%q) = %q, %v", mode, p.Name, err)
		}
	}
	if Modes()[0] != ModeAllowlist {
		t.Errorf("default mode %q, want %q", Modes()[0], ModeAllowlist)
	}
	for _, bad := range []string{"", "Allowlist", "off", "none"} {
		if _, err := WorkerPolicy(bad); err == nil {
			t.Errorf("WorkerPolicy(%q) accepted", bad)
		}
	}
}

func TestAllowedBPFCommandsAreExactlyTheMapCommands(t *testing.T) {
	// Numbers from linux/bpf.h, written out rather than taken from x/sys.
	want := []uint32{1, 2, 3, 4, 15, 24, 25, 26, 27}
	if got := bpfCommandNumbers(AllowedBPFCommands()); !slices.Equal(got, want) {
		t.Fatalf("allowed bpf commands = %v, want %v", got, want)
	}
	for _, tc := range []struct {
		p  Policy
		op condOp
		a  Action
	}{{WorkerAllowlist(), opIn, Allow}, {WorkerDenylist(), opNotIn, Errno}} {
		var rules []Rule
		for _, r := range tc.p.Rules {
			if r.Syscall == "bpf" {
				rules = append(rules, r)
			}
		}
		if len(rules) != 1 || len(rules[0].Args) != 1 {
			t.Fatalf("%s: bpf rules %+v, want one with one condition", tc.p.Name, rules)
		}
		c := rules[0].Args[0]
		if c.Arg != 0 || c.op != tc.op || !slices.Equal(c.values, want) || rules[0].Action != tc.a {
			t.Fatalf("%s: bpf rule %s %s, want %s on exactly %v in argument 0", tc.p.Name, rules[0].Action, c, tc.a, want)
		}
	}
}

func TestWorkerPoliciesReturnCopies(t *testing.T) {
	for _, get := range []func() Policy{WorkerAllowlist, WorkerDenylist} {
		p := get()
		for i := range p.Rules {
			for j := range p.Rules[i].Args {
				if len(p.Rules[i].Args[j].values) > 0 {
					p.Rules[i].Args[j].values[0] = unix.BPF_MAP_FREEZE
				}
				p.Rules[i].Args[j].Arg = 5
			}
			p.Rules[i].Action = Allow
		}
		p.Default = Allow
		if q := get(); q.validate() != nil || slices.ContainsFunc(q.Rules, func(r Rule) bool { return r.Action == q.Default }) {
			t.Fatalf("%s: changing the returned policy changed the table", q.Name)
		}
	}
	cmds := AllowedBPFCommands()
	cmds[0].Cmd = unix.BPF_MAP_FREEZE
	if AllowedBPFCommands()[0].Cmd != unix.BPF_MAP_LOOKUP_ELEM {
		t.Fatal("changing the returned commands changed the policy")
	}
}

func TestValidateRejectsIncompleteOrAmbiguousPolicies(t *testing.T) {
	ok := Rule{Syscall: "ptrace", Action: Errno, Errno: unix.EPERM, Why: "x"}
	for name, p := range map[string]Policy{
		"no default":      {Name: "t", Rules: []Rule{ok}},
		"errno default":   {Name: "t", Default: Errno, Rules: []Rule{ok}},
		"no name":         {Default: Allow, Rules: []Rule{{Action: Errno, Errno: unix.EPERM, Why: "x"}}},
		"no action":       {Default: Allow, Rules: []Rule{{Syscall: "ptrace", Errno: unix.EPERM, Why: "x"}}},
		"no errno":        {Default: Allow, Rules: []Rule{{Syscall: "ptrace", Action: Errno, Why: "x"}}},
		"errno on allow":  {Default: Kill, Rules: []Rule{{Syscall: "ptrace", Action: Allow, Errno: unix.EPERM, Why: "x"}}},
		"no reason":       {Default: Allow, Rules: []Rule{{Syscall: "ptrace", Action: Errno, Errno: unix.EPERM}}},
		"big errno":       {Default: Allow, Rules: []Rule{{Syscall: "ptrace", Action: Errno, Errno: 5000, Why: "x"}}},
		"allow in allow":  {Default: Allow, Rules: []Rule{{Syscall: "ptrace", Action: Allow, Why: "x"}}},
		"kill in kill":    {Default: Kill, Rules: []Rule{{Syscall: "ptrace", Action: Kill, Why: "x"}}},
		"bad arg index":   {Default: Allow, Rules: []Rule{{Syscall: "bpf", Action: Errno, Errno: 1, Why: "x", Args: []Cond{In(6, 1)}}}},
		"empty In":        {Default: Allow, Rules: []Rule{{Syscall: "bpf", Action: Errno, Errno: 1, Why: "x", Args: []Cond{In(0)}}}},
		"zero Cond":       {Default: Allow, Rules: []Rule{{Syscall: "bpf", Action: Errno, Errno: 1, Why: "x", Args: []Cond{{}}}}},
		"empty AnyBit":    {Default: Allow, Rules: []Rule{{Syscall: "clone", Action: Errno, Errno: 1, Why: "x", Args: []Cond{AnyBit(0, 0)}}}},
		"unmatchable":     {Default: Allow, Rules: []Rule{{Syscall: "clone", Action: Errno, Errno: 1, Why: "x", Args: []Cond{Masked(0, 1, 2)}}}},
		"same arg twice":  {Default: Allow, Rules: []Rule{{Syscall: "bpf", Action: Errno, Errno: 1, Why: "x", Args: []Cond{In(0, 1), In(0, 2)}}}},
		"duplicate entry": {Default: Allow, Rules: []Rule{ok, ok}},
		"overlap": {Default: Kill, Rules: []Rule{
			{Syscall: "socket", Action: Allow, Why: "x", Args: []Cond{In(0, unix.AF_INET)}},
			{Syscall: "socket", Action: Errno, Errno: 1, Why: "x", Args: []Cond{In(2, unix.IPPROTO_MPTCP)}},
		}},
		"overlap on a masked bit": {Default: Kill, Rules: []Rule{
			{Syscall: "clone", Action: Allow, Why: "x", Args: []Cond{Masked(0, unix.CLONE_NEWNET, 0)}},
			{Syscall: "clone", Action: Errno, Errno: 1, Why: "x", Args: []Cond{AnyBit(0, unix.CLONE_NEWUSER)}},
		}},
	} {
		if err := p.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, p)
		}
		if f, _, err := build(p); err == nil {
			f.Release()
			t.Errorf("%s: build accepted %+v", name, p)
		}
	}
	// Rules on one syscall that no call meets together are fine.
	disjoint := Policy{Name: "t", Default: Kill, Rules: []Rule{
		{Syscall: "socket", Action: Allow, Why: "x", Args: []Cond{In(0, unix.AF_INET), In(2, 0)}},
		{Syscall: "socket", Action: Errno, Errno: 1, Why: "x", Args: []Cond{In(0, unix.AF_INET), In(2, unix.IPPROTO_MPTCP)}},
		{Syscall: "clone", Action: Allow, Why: "x", Args: []Cond{Masked(0, unix.CLONE_NEWUSER, 0)}},
		{Syscall: "clone", Action: Errno, Errno: 1, Why: "x", Args: []Cond{AnyBit(0, unix.CLONE_NEWUSER)}},
	}}
	if err := disjoint.validate(); err != nil {
		t.Fatalf("disjoint rules rejected: %v", err)
	}
}

func TestOverlapAgreesWithEvaluation(t *testing.T) {
	// overlap is decided on masks; check it against brute force on small
	// argument spaces.
	rng := rand.New(rand.NewPCG(7, 8))
	conds := func(arg uint) Cond {
		switch rng.IntN(4) {
		case 0:
			return In(arg, rng.Uint32N(8), rng.Uint32N(8))
		case 1:
			return NotIn(arg, rng.Uint32N(8), rng.Uint32N(8), rng.Uint32N(8))
		case 2:
			return AnyBit(arg, 1+rng.Uint64N(7))
		}
		m := rng.Uint64N(8)
		return Masked(arg, m, rng.Uint64N(8)&m)
	}
	for range 2000 {
		a := Rule{Args: []Cond{conds(0)}}
		b := Rule{Args: []Cond{conds(0)}}
		if rng.IntN(2) == 0 {
			a.Args = append(a.Args, conds(1))
		}
		if rng.IntN(2) == 0 {
			b.Args = append(b.Args, conds(1))
		}
		// Values of 0..15 decide every condition above, whose masks and
		// values stay below 8, except NotIn, which the extra bit tests.
		brute := false
		for x := range uint64(16) {
			for y := range uint64(16) {
				args := [6]uint64{x, y}
				if a.matches(args) && b.matches(args) {
					brute = true
				}
			}
		}
		if got := overlap(a, b); got != brute {
			t.Fatalf("overlap(%v, %v) = %v, brute force says %v", a.Args, b.Args, got, brute)
		}
	}
}

func TestParseViolationReadsTheReportersLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Violation
		ok   bool
	}{
		{ViolationPrefix + "setuid (105)\n", Violation{"setuid", 105}, true},
		{ViolationPrefix + "unknown (999)", Violation{"unknown", 999}, true},
		{ViolationPrefix + "setuid (105", Violation{}, false},
		{ViolationPrefix + " (105)", Violation{}, false},
		{ViolationPrefix + "setuid (-1)", Violation{}, false},
		{"2026-01-01 [INFO] " + ViolationPrefix + "setuid (105)", Violation{}, false},
		{"panic: SIGSYS", Violation{}, false},
	} {
		got, ok := ParseViolation(tc.line)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseViolation(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestKilledByFilterReadsExitStatusAndSignal(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   bool
	}{
		{"exit 159", true},
		{"ulimit -c 0; kill -SYS $$", true},
		{"exit 0", false},
		{"exit 2", false},
		{"kill -KILL $$", false},
	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		_ = cmd.Run()
		if got := KilledByFilter(cmd.ProcessState); got != tc.want {
			t.Errorf("%q: KilledByFilter = %v, want %v", tc.script, got, tc.want)
		}
	}
	if KilledByFilter(nil) {
		t.Error("KilledByFilter(nil) = true")
	}
}

// checkPartition proves that blocks cover exactly the 32-bit values outside
// allowed: they are pairwise disjoint, contain no allowed value, and their
// sizes add up to the size of the complement. It then samples values too.
func checkPartition(t *testing.T, allowed []uint32, blocks []maskedBlock, rng *rand.Rand) {
	t.Helper()
	isAllowed := map[uint32]bool{}
	for _, v := range allowed {
		isAllowed[v] = true
	}
	var total uint64
	for i, b := range blocks {
		size := uint64(^b.mask) + 1
		if size&(size-1) != 0 || b.value&^b.mask != 0 {
			t.Fatalf("block %d (%#x/%#x) is not an aligned power of two", i, b.value, b.mask)
		}
		total += size
		for _, c := range blocks[:i] {
			if b.value&c.mask == c.value || c.value&b.mask == b.value {
				t.Fatalf("blocks %#x/%#x and %#x/%#x overlap", b.value, b.mask, c.value, c.mask)
			}
		}
		for v := range isAllowed {
			if v&b.mask == b.value {
				t.Fatalf("block %#x/%#x contains allowed value %d", b.value, b.mask, v)
			}
		}
	}
	if want := uint64(1)<<32 - uint64(len(isAllowed)); total != want {
		t.Fatalf("blocks cover %d values, want %d", total, want)
	}

	check := func(v uint32) {
		matches := 0
		for _, b := range blocks {
			// The 64-bit comparison libseccomp emits, with junk in the
			// upper half of the register.
			arg := rng.Uint64()<<32 | uint64(v)
			if arg&uint64(b.mask) == uint64(b.value) {
				matches++
			}
		}
		if want := map[bool]int{true: 0, false: 1}[isAllowed[v]]; matches != want {
			t.Fatalf("value %d matched %d blocks, want %d", v, matches, want)
		}
	}
	for v := range uint32(4097) {
		check(v)
	}
	for _, v := range allowed {
		check(v - 1)
		check(v)
		check(v + 1)
	}
	for range 20000 {
		check(rng.Uint32())
	}
	check(1<<31 - 1)
	check(1 << 31)
	check(1<<32 - 1)
}

func TestComplementBlocksPartitionTheComplement(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]uint32{
		"worker bpf commands": bpfCommandNumbers(allowedBPFCommands),
		"nothing allowed":     nil,
		"zero":                {0},
		"top value":           {1<<32 - 1},
		"both ends":           {0, 1<<32 - 1},
		"duplicates":          {7, 7, 3, 3},
		"unsorted high":       {1 << 31, 5, 1<<31 + 1, 65536},
	}
	for i := range 5 {
		var vals []uint32
		for range 1 + rng.IntN(40) {
			vals = append(vals, rng.Uint32()>>rng.UintN(32))
		}
		cases["random "+string(rune('a'+i))] = vals
	}
	for name, allowed := range cases {
		t.Run(name, func(t *testing.T) {
			checkPartition(t, allowed, complementBlocks(allowed), rng)
		})
	}
}

func TestComplementBlocksUseFewRules(t *testing.T) {
	// A gap is covered by at most two blocks per bit of the value.
	if n := len(complementBlocks(bpfCommandNumbers(allowedBPFCommands))); n > 64 {
		t.Fatalf("%d blocks for the worker's bpf commands", n)
	}
	if n := len(complementBlocks(nil)); n != 1 {
		t.Fatalf("empty allowed set gives %d blocks, want 1 covering everything", n)
	}
}

func TestDisabledByEnv(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{{"", false}, {"0", false}, {"no", false}, {"1", true}, {"TRUE", true}, {"yes", true}} {
		t.Setenv(DisableEnv, tc.value)
		if got, err := DisabledByEnv(); err != nil || got != tc.want {
			t.Errorf("%s=%q: DisabledByEnv() = %v, %v; want %v, nil", DisableEnv, tc.value, got, err, tc.want)
		}
	}
	t.Setenv(DisableEnv, "disable")
	_, err := DisabledByEnv()
	if !errors.Is(err, envflag.ErrInvalid) || !strings.Contains(err.Error(), DisableEnv) {
		t.Fatalf("DisabledByEnv() with a typo: err = %v, want one naming %s and wrapping envflag.ErrInvalid", err, DisableEnv)
	}
}
