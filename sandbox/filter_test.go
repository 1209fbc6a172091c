package sandbox

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/envflag"
)

// briefDenied is the deny list the worker's filter was specified with,
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

func TestWorkerRulesListEverySpecifiedSyscallOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range WorkerRules() {
		if seen[r.Syscall] {
			t.Errorf("%s listed twice", r.Syscall)
		}
		seen[r.Syscall] = true
		if err := r.validate(); err != nil {
			t.Error(err)
		}
	}
	for _, name := range briefDenied {
		if !seen[name] {
			t.Errorf("%s missing from the worker rules", name)
		}
	}
}

func TestAllowedBPFCommandsAreExactlyTheMapCommands(t *testing.T) {
	// Numbers from linux/bpf.h, written out rather than taken from x/sys.
	want := []uint32{1, 2, 3, 4, 15, 24, 25, 26, 27}
	if got := bpfCommandNumbers(AllowedBPFCommands()); !slices.Equal(got, want) {
		t.Fatalf("allowed bpf commands = %v, want %v", got, want)
	}
	var bpfRule *Rule
	for _, r := range WorkerRules() {
		if r.Syscall == "bpf" {
			bpfRule = &r
		}
	}
	if bpfRule == nil || bpfRule.Unless == nil || bpfRule.Unless.Arg != 0 || !slices.Equal(bpfRule.Unless.Values, want) {
		t.Fatalf("bpf rule = %+v, want it to exempt exactly %v in argument 0", bpfRule, want)
	}
}

func TestWorkerRulesReturnsACopy(t *testing.T) {
	rules := WorkerRules()
	for i := range rules {
		if rules[i].Unless != nil {
			rules[i].Unless.Values[0] = unix.BPF_PROG_LOAD
		}
		rules[i].Errno = 0
	}
	cmds := AllowedBPFCommands()
	cmds[0].Cmd = unix.BPF_MAP_FREEZE
	for _, r := range WorkerRules() {
		if r.Errno == 0 || (r.Unless != nil && r.Unless.Values[0] != unix.BPF_MAP_LOOKUP_ELEM) {
			t.Fatal("changing the returned rules changed the policy")
		}
	}
	if AllowedBPFCommands()[0].Cmd != unix.BPF_MAP_LOOKUP_ELEM {
		t.Fatal("changing the returned commands changed the policy")
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

func TestCompiledFilterRefusesBPFCommandsOnTheLow32BitsOnly(t *testing.T) {
	prog, _ := exportFilter(t, WorkerRules())
	rng := rand.New(rand.NewPCG(3, 4))
	allowed := map[uint32]bool{}
	for _, c := range AllowedBPFCommands() {
		allowed[c.Cmd] = true
	}
	nr := mustSyscall(t, "bpf")
	if nr != unix.SYS_BPF {
		t.Fatalf("libseccomp numbers bpf %d, Go %d", nr, unix.SYS_BPF)
	}
	check := func(cmd uint32, high uint32) {
		data := seccompData(auditArchX86_64, nr, uint64(high)<<32|uint64(cmd), rng.Uint64(), rng.Uint64())
		got, err := run(prog, data)
		if err != nil {
			t.Fatal(err)
		}
		want := uint32(retErrno | unix.EPERM)
		if allowed[cmd] {
			want = retAllow
		}
		if got != want {
			t.Fatalf("bpf(cmd=%#x | %#x<<32) = %s, want %s", cmd, high, verdictString(got), verdictString(want))
		}
	}
	for cmd := range uint32(4097) {
		check(cmd, 0)
		check(cmd, 1)
		check(cmd, 1<<32-1)
		check(cmd, rng.Uint32())
	}
	for range 20000 {
		check(rng.Uint32(), rng.Uint32())
	}
	check(1<<32-1, 0)
	check(1<<31, 0)
}

func TestCompiledFilterRefusesEveryListedSyscall(t *testing.T) {
	prog, report := exportFilter(t, WorkerRules())
	if len(report.Skipped) > 0 {
		t.Logf("skipped on this architecture: %v", report.Skipped)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	denied := map[int32]bool{}
	for _, r := range WorkerRules() {
		if slices.Contains(report.Skipped, r.Syscall) {
			continue
		}
		nr := mustSyscall(t, r.Syscall)
		denied[nr] = true
		if r.conditions() != nil {
			continue // conditional rules have tests of their own
		}
		for range 10 {
			got, err := run(prog, seccompData(auditArchX86_64, nr, rng.Uint64(), rng.Uint64(), rng.Uint64()))
			if err != nil {
				t.Fatal(err)
			}
			if want := uint32(retErrno) | uint32(r.Errno); got != want {
				t.Fatalf("%s (%d) = %s, want %s", r.Syscall, nr, verdictString(got), verdictString(want))
			}
		}
	}
	// Spot-check that libseccomp's numbers are the ones Go calls with.
	for name, goNr := range map[string]int{"ptrace": unix.SYS_PTRACE, "mount": unix.SYS_MOUNT, "unshare": unix.SYS_UNSHARE, "setresuid": unix.SYS_SETRESUID, "open_tree": unix.SYS_OPEN_TREE} {
		if nr := mustSyscall(t, name); int(nr) != goNr {
			t.Errorf("libseccomp numbers %s %d, Go %d", name, nr, goNr)
		}
	}

	// Everything else is allowed, clone3 included (glibc needs ENOSYS, not
	// EPERM, before it falls back to clone).
	for nr := range int32(600) {
		if denied[nr] {
			continue
		}
		got, err := run(prog, seccompData(auditArchX86_64, nr, rng.Uint64(), rng.Uint64()))
		if err != nil {
			t.Fatal(err)
		}
		if got != retAllow {
			t.Fatalf("syscall %d = %s, want ALLOW", nr, verdictString(got))
		}
	}
}

func TestCompiledFilterRefusesNamespaceClonesAndTerminalInjection(t *testing.T) {
	prog, _ := exportFilter(t, WorkerRules())
	sigchld := uint64(unix.SIGCHLD)
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"clone(SIGCHLD)", seccompData(auditArchX86_64, unix.SYS_CLONE, sigchld), retAllow},
		{"clone(thread flags)", seccompData(auditArchX86_64, unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD), retAllow},
		{"clone(CLONE_NEWUSER)", seccompData(auditArchX86_64, unix.SYS_CLONE, unix.CLONE_NEWUSER|sigchld), retErrno | uint32(unix.EPERM)},
		{"clone(CLONE_NEWNET)", seccompData(auditArchX86_64, unix.SYS_CLONE, unix.CLONE_NEWNET), retErrno | uint32(unix.EPERM)},
		{"clone(CLONE_NEWNS)", seccompData(auditArchX86_64, unix.SYS_CLONE, unix.CLONE_NEWNS), retErrno | uint32(unix.EPERM)},
		{"clone(CLONE_NEWTIME)", seccompData(auditArchX86_64, unix.SYS_CLONE, unix.CLONE_NEWTIME), retErrno | uint32(unix.EPERM)},
		{"clone3", seccompData(auditArchX86_64, unix.SYS_CLONE3), retErrno | uint32(unix.ENOSYS)},
		{"ioctl(TIOCSTI)", seccompData(auditArchX86_64, unix.SYS_IOCTL, 0, unix.TIOCSTI), retErrno | uint32(unix.EPERM)},
		{"ioctl(TIOCSTI | 1<<32)", seccompData(auditArchX86_64, unix.SYS_IOCTL, 0, 1<<32|unix.TIOCSTI), retErrno | uint32(unix.EPERM)},
		{"ioctl(TIOCLINUX)", seccompData(auditArchX86_64, unix.SYS_IOCTL, 0, unix.TIOCLINUX), retErrno | uint32(unix.EPERM)},
		{"ioctl(TCGETS)", seccompData(auditArchX86_64, unix.SYS_IOCTL, 0, unix.TCGETS), retAllow},
	} {
		got, err := run(prog, tc.data)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, verdictString(got), verdictString(tc.want))
		}
	}
}

func TestCompiledFilterKillsOtherABIs(t *testing.T) {
	prog, _ := exportFilter(t, WorkerRules())
	for name, data := range map[string][]byte{
		"i386 mount":   seccompData(auditArchI386, 21),
		"i386 getpid":  seccompData(auditArchI386, 20),
		"x32 getpid":   seccompData(auditArchX86_64, x32SyscallBit|unix.SYS_GETPID),
		"x32 ptrace":   seccompData(auditArchX86_64, x32SyscallBit|521),
		"unknown arch": seccompData(0xdead, unix.SYS_GETPID),
	} {
		got, err := run(prog, data)
		if err != nil {
			t.Fatal(err)
		}
		if got != retKillProcess {
			t.Errorf("%s = %s, want KILL_PROCESS", name, verdictString(got))
		}
	}
}

func TestBuildSkipsSyscallsThisArchitectureLacks(t *testing.T) {
	rules := []Rule{
		{Syscall: "no_such_syscall", Errno: unix.EPERM, Why: "test"},
		{Syscall: "socketcall", Errno: unix.EPERM, Why: "test: exists on i386 only"},
		{Syscall: "ptrace", Errno: unix.EPERM, Why: "test"},
	}
	prog, report := exportFilter(t, rules)
	if !slices.Equal(report.Skipped, []string{"no_such_syscall", "socketcall"}) {
		t.Fatalf("skipped %v, want [no_such_syscall socketcall]", report.Skipped)
	}
	if report.Rules != 1 {
		t.Fatalf("%d rules added, want 1", report.Rules)
	}
	got, err := run(prog, seccompData(auditArchX86_64, unix.SYS_PTRACE))
	if err != nil || got != retErrno|uint32(unix.EPERM) {
		t.Fatalf("ptrace = %s, %v; want ERRNO(1)", verdictString(got), err)
	}
}

func TestBuildHonoursPerRuleErrno(t *testing.T) {
	prog, _ := exportFilter(t, []Rule{{Syscall: "clone3", Errno: unix.ENOSYS, Why: "test"}})
	got, err := run(prog, seccompData(auditArchX86_64, unix.SYS_CLONE3))
	if err != nil || got != retErrno|uint32(unix.ENOSYS) {
		t.Fatalf("clone3 = %s, %v; want ERRNO(%d)", verdictString(got), err, unix.ENOSYS)
	}
}

func TestBuildRejectsIncompleteRules(t *testing.T) {
	for name, r := range map[string]Rule{
		"no name":     {Errno: unix.EPERM, Why: "x"},
		"no errno":    {Syscall: "ptrace", Why: "x"},
		"no reason":   {Syscall: "ptrace", Errno: unix.EPERM},
		"big errno":   {Syscall: "ptrace", Errno: 5000, Why: "x"},
		"bad arg idx": {Syscall: "bpf", Errno: unix.EPERM, Why: "x", Unless: &ArgIn{Arg: 6}},
	} {
		if f, _, err := build([]Rule{r}); err == nil {
			f.Release()
			t.Errorf("%s: build accepted %+v", name, r)
		}
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
