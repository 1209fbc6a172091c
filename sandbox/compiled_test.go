package sandbox

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// These tests run the filters libseccomp compiled from the worker's
// policies in the interpreter of cbpf_test.go and hold every verdict to
// the table's.

var workerPolicies = map[string]func() Policy{ModeAllowlist: WorkerAllowlist, ModeDenylist: WorkerDenylist}

// probeArgs returns argument values around what c compares: its values and
// their neighbours, its mask bits, with and without junk in the upper half.
func probeArgs(c Cond, rng *rand.Rand) []uint64 {
	var out []uint64
	add := func(v uint64) {
		out = append(out, v, v|rng.Uint64()<<32, v|1<<32, v|0xffffffff<<32)
	}
	for _, v := range c.values {
		add(uint64(v))
		add(uint64(v + 1))
		add(uint64(v - 1))
	}
	for bit := uint64(1); bit != 0; bit <<= 1 {
		if c.mask&bit != 0 {
			add(c.value | bit)
			add(c.value &^ bit)
		}
	}
	if c.op == opMasked {
		add(c.value)
		add(c.value | rng.Uint64()&^c.mask)
	}
	add(rng.Uint64())
	return out
}

func checkVerdict(t *testing.T, p Policy, prog []sockFilter, nr int32, name string, args [6]uint64) {
	t.Helper()
	got, err := run(prog, seccompData(auditArchX86_64, nr, args[:]...))
	if err != nil {
		t.Fatal(err)
	}
	a, e := p.verdict(name, args)
	if w := want(a, e); got != w {
		t.Fatalf("%s: %s(%d) %#x = %s, the table says %s", p.Name, name, nr, args, verdictString(got), verdictString(w))
	}
}

func TestCompiledPoliciesAgreeWithTheirTables(t *testing.T) {
	for mode, get := range workerPolicies {
		t.Run(mode, func(t *testing.T) {
			p := get()
			prog, report := exportFilter(t, p)
			if len(report.Skipped) > 0 {
				t.Fatalf("skipped on x86_64 with libseccomp %v: %v", libseccompVersion(), report.Skipped)
			}
			t.Logf("%d rules, %d instructions", report.Rules, len(prog))
			rng := rand.New(rand.NewPCG(11, 12))
			// Every number up to past the highest x86_64 syscall, with
			// random arguments.
			for nr := range int32(600) {
				name, err := seccomp.ScmpSyscall(nr).GetName()
				if err != nil {
					name = "" // no rule names it: the default
				}
				for range 8 {
					checkVerdict(t, p, prog, nr, name, [6]uint64{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()})
				}
			}
			// Every conditional entry, with arguments around what its
			// conditions compare, combined across arguments.
			for _, r := range p.Rules {
				nr := mustSyscall(t, r.Syscall)
				probes := map[uint][]uint64{}
				for _, c := range r.Args {
					probes[c.Arg] = probeArgs(c, rng)
				}
				// Values from every rule on the same syscall, so that
				// the boundary between two of them is probed too.
				for _, q := range p.Rules {
					if q.Syscall == r.Syscall {
						for _, c := range q.Args {
							probes[c.Arg] = append(probes[c.Arg], probeArgs(c, rng)...)
						}
					}
				}
				if len(probes) == 0 {
					continue
				}
				for range 3000 {
					var args [6]uint64
					for i := range args {
						args[i] = rng.Uint64()
						if vs := probes[uint(i)]; len(vs) > 0 && rng.IntN(8) > 0 {
							args[i] = vs[rng.IntN(len(vs))]
						}
					}
					checkVerdict(t, p, prog, nr, r.Syscall, args)
				}
			}
		})
	}
}

func libseccompVersion() [3]uint {
	a, b, c := seccomp.GetLibraryVersion()
	return [3]uint{a, b, c}
}

// satisfying returns arguments that meet every condition of r.
func satisfying(r Rule, rng *rand.Rand) [6]uint64 {
	var args [6]uint64
	for i := range args {
		args[i] = rng.Uint64()
	}
	for _, c := range r.Args {
		alt := c.alternatives()[rng.IntN(len(c.alternatives()))]
		args[c.Arg] = alt[1] | rng.Uint64()&^alt[0]
	}
	return args
}

func TestAllowlistAllowsEveryListedCall(t *testing.T) {
	p := WorkerAllowlist()
	prog, _ := exportFilter(t, p)
	rng := rand.New(rand.NewPCG(13, 14))
	for _, r := range p.Rules {
		nr := mustSyscall(t, r.Syscall)
		for range 20 {
			args := satisfying(r, rng)
			got, err := run(prog, seccompData(auditArchX86_64, nr, args[:]...))
			if err != nil {
				t.Fatal(err)
			}
			if w := want(r.Action, r.Errno); got != w {
				t.Fatalf("%s %#x (meets %v) = %s, want %s", r.Syscall, args, r.Args, verdictString(got), verdictString(w))
			}
		}
	}
}

func TestAllowlistKillsWhatItDoesNotList(t *testing.T) {
	p := WorkerAllowlist()
	prog, _ := exportFilter(t, p)
	rng := rand.New(rand.NewPCG(15, 16))
	for _, name := range mustKill {
		nr, err := seccomp.GetSyscallFromName(name)
		if err != nil || nr < 0 {
			t.Fatalf("%s: no x86_64 number (%v)", name, err)
		}
		for range 20 {
			got, err := run(prog, seccompData(auditArchX86_64, int32(nr), rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()))
			if err != nil {
				t.Fatal(err)
			}
			if got != retTrap {
				t.Fatalf("%s (%d) = %s, want TRAP", name, nr, verdictString(got))
			}
		}
	}
	// Numbers the kernel may assign later.
	for nr := int32(470); nr < 1024; nr++ {
		if got, _ := run(prog, seccompData(auditArchX86_64, nr)); got != retTrap {
			t.Fatalf("syscall %d = %s, want TRAP", nr, verdictString(got))
		}
	}
}

// verdicts checks named calls against a compiled policy.
type verdictCase struct {
	name string
	nr   int
	args []uint64
	want uint32
}

func checkCases(t *testing.T, p Policy, cases []verdictCase) {
	t.Helper()
	prog, _ := exportFilter(t, p)
	for _, tc := range cases {
		got, err := run(prog, seccompData(auditArchX86_64, int32(tc.nr), tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: %s = %s, want %s", p.Name, tc.name, verdictString(got), verdictString(tc.want))
		}
	}
}

const (
	errnoENOSYS = retErrno | uint32(unix.ENOSYS)
	errnoEPERM  = retErrno | uint32(unix.EPERM)
)

func TestAllowlistBPFAllowsMapCommandsOnTheLow32BitsOnly(t *testing.T) {
	prog, _ := exportFilter(t, WorkerAllowlist())
	checkBPFCommands(t, prog, retAllow, retTrap)
}

func TestDenylistRefusesBPFCommandsOnTheLow32BitsOnly(t *testing.T) {
	prog, _ := exportFilter(t, WorkerDenylist())
	checkBPFCommands(t, prog, retAllow, errnoEPERM)
}

func checkBPFCommands(t *testing.T, prog []sockFilter, allowedVerdict, refusedVerdict uint32) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	allowed := map[uint32]bool{}
	for _, c := range AllowedBPFCommands() {
		allowed[c.Cmd] = true
	}
	if nr := mustSyscall(t, "bpf"); nr != unix.SYS_BPF {
		t.Fatalf("libseccomp numbers bpf %d, Go %d", nr, unix.SYS_BPF)
	}
	check := func(cmd uint32, high uint32) {
		data := seccompData(auditArchX86_64, unix.SYS_BPF, uint64(high)<<32|uint64(cmd), rng.Uint64(), rng.Uint64())
		got, err := run(prog, data)
		if err != nil {
			t.Fatal(err)
		}
		w := refusedVerdict
		if allowed[cmd] {
			w = allowedVerdict
		}
		if got != w {
			t.Fatalf("bpf(cmd=%#x | %#x<<32) = %s, want %s", cmd, high, verdictString(got), verdictString(w))
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
	check(unix.BPF_MAP_FREEZE, 1)
}

func TestAllowlistClonesThreadsOnlyAndAnswersClone3WithENOSYS(t *testing.T) {
	// glibc's pthread_create after clone3 failed, and the Go runtime's own
	// flags (runtime/os_linux.go cloneFlags) for builds without cgo.
	const glibcThread = 0x3d0f00
	const goThread = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD
	sigchld := uint64(unix.SIGCHLD)
	checkCases(t, WorkerAllowlist(), []verdictCase{
		{"clone(glibc thread)", unix.SYS_CLONE, []uint64{glibcThread}, retAllow},
		{"clone(Go thread)", unix.SYS_CLONE, []uint64{goThread}, retAllow},
		{"clone(Go thread | junk<<32)", unix.SYS_CLONE, []uint64{goThread | 0xdead<<32}, retAllow},
		{"clone(SIGCHLD), a fork", unix.SYS_CLONE, []uint64{sigchld}, retTrap},
		{"clone(CLONE_VM|CLONE_VFORK|SIGCHLD), os/exec's fork", unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_VFORK | sigchld}, retTrap},
		{"clone(thread | CLONE_NEWUSER)", unix.SYS_CLONE, []uint64{glibcThread | unix.CLONE_NEWUSER}, retTrap},
		{"clone(thread | CLONE_NEWNET)", unix.SYS_CLONE, []uint64{glibcThread | unix.CLONE_NEWNET}, retTrap},
		{"clone(thread | CLONE_NEWTIME)", unix.SYS_CLONE, []uint64{glibcThread | unix.CLONE_NEWTIME}, retTrap},
		{"clone(CLONE_NEWUSER|SIGCHLD)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER | sigchld}, retTrap},
		{"clone3", unix.SYS_CLONE3, nil, errnoENOSYS},
		{"fork", unix.SYS_FORK, nil, retTrap},
		{"vfork", unix.SYS_VFORK, nil, retTrap},
		{"unshare(CLONE_NEWUSER)", unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWUSER}, retTrap},
	})
}

func TestAllowlistNeverMapsExecutableMemory(t *testing.T) {
	rw := uint64(unix.PROT_READ | unix.PROT_WRITE)
	checkCases(t, WorkerAllowlist(), []verdictCase{
		{"mmap(PROT_NONE)", unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_NONE}, retAllow},
		{"mmap(PROT_READ|PROT_WRITE)", unix.SYS_MMAP, []uint64{0, 4096, rw}, retAllow},
		{"mmap(PROT_READ|PROT_EXEC)", unix.SYS_MMAP, []uint64{0, 4096, unix.PROT_READ | unix.PROT_EXEC}, retTrap},
		{"mmap(PROT_EXEC | junk<<32)", unix.SYS_MMAP, []uint64{0, 4096, 1<<40 | unix.PROT_EXEC}, retTrap},
		{"mprotect(PROT_READ|PROT_WRITE)", unix.SYS_MPROTECT, []uint64{0, 4096, rw}, retAllow},
		{"mprotect(PROT_EXEC)", unix.SYS_MPROTECT, []uint64{0, 4096, unix.PROT_EXEC}, retTrap},
		{"mprotect(PROT_READ|PROT_WRITE|PROT_EXEC)", unix.SYS_MPROTECT, []uint64{0, 4096, rw | unix.PROT_EXEC}, retTrap},
		{"pkey_mprotect(PROT_READ)", unix.SYS_PKEY_MPROTECT, []uint64{0, 4096, unix.PROT_READ, 0}, retTrap},
		{"memfd_create", unix.SYS_MEMFD_CREATE, nil, retTrap},
	})
}

func TestAllowlistLimitsSocketsAndTheirOptions(t *testing.T) {
	stream := uint64(unix.SOCK_STREAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK)
	eprotonosupport := retErrno | uint32(unix.EPROTONOSUPPORT)
	checkCases(t, WorkerAllowlist(), []verdictCase{
		{"socket(AF_INET, STREAM, 0)", unix.SYS_SOCKET, []uint64{unix.AF_INET, stream, 0}, retAllow},
		{"socket(AF_INET6, STREAM, IPPROTO_TCP)", unix.SYS_SOCKET, []uint64{unix.AF_INET6, stream, unix.IPPROTO_TCP}, retAllow},
		{"socket(AF_INET, DGRAM, 0)", unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}, retAllow},
		{"socket(AF_INET, STREAM, IPPROTO_MPTCP)", unix.SYS_SOCKET, []uint64{unix.AF_INET, stream, unix.IPPROTO_MPTCP}, eprotonosupport},
		{"socket(AF_INET6, STREAM, IPPROTO_MPTCP)", unix.SYS_SOCKET, []uint64{unix.AF_INET6, stream, unix.IPPROTO_MPTCP}, eprotonosupport},
		{"socket(AF_NETLINK, RAW, NETLINK_ROUTE)", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE}, retAllow},
		{"socket(AF_NETLINK, RAW, NETLINK_AUDIT)", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT}, retTrap},
		{"socket(AF_NETLINK, RAW, NETLINK_NETFILTER)", unix.SYS_SOCKET, []uint64{unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER}, retTrap},
		{"socket(AF_INET, RAW, IPPROTO_ICMP)", unix.SYS_SOCKET, []uint64{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP}, retTrap},
		{"socket(AF_UNIX, STREAM, 0)", unix.SYS_SOCKET, []uint64{unix.AF_UNIX, stream, 0}, retTrap},
		{"socket(AF_PACKET, RAW, 0)", unix.SYS_SOCKET, []uint64{unix.AF_PACKET, unix.SOCK_RAW, 0}, retTrap},
		{"socket(AF_ALG, SEQPACKET, 0)", unix.SYS_SOCKET, []uint64{unix.AF_ALG, unix.SOCK_SEQPACKET, 0}, retTrap},
		{"socket(AF_VSOCK, STREAM, 0)", unix.SYS_SOCKET, []uint64{unix.AF_VSOCK, stream, 0}, retTrap},
		{"socketpair(AF_UNIX)", unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX, stream, 0}, retTrap},
		{"setsockopt(SOL_SOCKET, SO_REUSEADDR)", unix.SYS_SETSOCKOPT, []uint64{3, unix.SOL_SOCKET, unix.SO_REUSEADDR}, retAllow},
		{"setsockopt(IPPROTO_TCP, TCP_NODELAY)", unix.SYS_SETSOCKOPT, []uint64{3, unix.IPPROTO_TCP, unix.TCP_NODELAY}, retAllow},
		{"setsockopt(IPPROTO_IPV6, IPV6_V6ONLY)", unix.SYS_SETSOCKOPT, []uint64{3, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY}, retAllow},
		{"setsockopt(IPPROTO_TCP, TCP_ULP)", unix.SYS_SETSOCKOPT, []uint64{3, unix.IPPROTO_TCP, unix.TCP_ULP}, retTrap},
		{"setsockopt(SOL_SOCKET, SO_ATTACH_FILTER)", unix.SYS_SETSOCKOPT, []uint64{3, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER}, retTrap},
		{"setsockopt(SOL_SOCKET, SO_ATTACH_BPF)", unix.SYS_SETSOCKOPT, []uint64{3, unix.SOL_SOCKET, unix.SO_ATTACH_BPF}, retTrap},
		{"setsockopt(IPPROTO_IP, IP_MULTICAST_IF)", unix.SYS_SETSOCKOPT, []uint64{3, unix.IPPROTO_IP, unix.IP_MULTICAST_IF}, retTrap},
		{"setsockopt(SOL_TCP, SO_REUSEADDR's number)", unix.SYS_SETSOCKOPT, []uint64{3, unix.SOL_TCP, unix.SO_REUSEADDR}, retTrap},
	})
}

func TestAllowlistAnswersIsattyAndKillsEveryOtherIoctl(t *testing.T) {
	enotty := retErrno | uint32(unix.ENOTTY)
	checkCases(t, WorkerAllowlist(), []verdictCase{
		{"ioctl(TCGETS)", unix.SYS_IOCTL, []uint64{2, unix.TCGETS}, enotty},
		{"ioctl(TCGETS | 1<<32)", unix.SYS_IOCTL, []uint64{2, 1<<32 | unix.TCGETS}, enotty},
		{"ioctl(TIOCSTI)", unix.SYS_IOCTL, []uint64{0, unix.TIOCSTI}, retTrap},
		{"ioctl(TIOCSTI | 1<<32)", unix.SYS_IOCTL, []uint64{0, 1<<32 | unix.TIOCSTI}, retTrap},
		{"ioctl(TIOCLINUX)", unix.SYS_IOCTL, []uint64{0, unix.TIOCLINUX}, retTrap},
		{"ioctl(FIONBIO, 0x5421)", unix.SYS_IOCTL, []uint64{3, 0x5421}, retTrap},
		{"ioctl(TIOCGWINSZ)", unix.SYS_IOCTL, []uint64{2, unix.TIOCGWINSZ}, retTrap},
	})
}

func TestAllowlistLetsPrctlNameMappingsOnly(t *testing.T) {
	checkCases(t, WorkerAllowlist(), []verdictCase{
		{"prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)", unix.SYS_PRCTL, []uint64{unix.PR_SET_VMA, unix.PR_SET_VMA_ANON_NAME}, retAllow},
		{"prctl(PR_SET_VMA, 1)", unix.SYS_PRCTL, []uint64{unix.PR_SET_VMA, 1}, retTrap},
		{"prctl(PR_SET_DUMPABLE, 1)", unix.SYS_PRCTL, []uint64{unix.PR_SET_DUMPABLE, 1}, retTrap},
		{"prctl(PR_SET_PTRACER, any)", unix.SYS_PRCTL, []uint64{unix.PR_SET_PTRACER, ^uint64(0)}, retTrap},
		{"prctl(PR_SET_SECCOMP)", unix.SYS_PRCTL, []uint64{unix.PR_SET_SECCOMP, 2}, retTrap},
		{"prctl(PR_SET_MM)", unix.SYS_PRCTL, []uint64{unix.PR_SET_MM, 1}, retTrap},
	})
}

func TestDenylistRefusesNamespaceClonesAndTerminalInjection(t *testing.T) {
	sigchld := uint64(unix.SIGCHLD)
	checkCases(t, WorkerDenylist(), []verdictCase{
		{"clone(SIGCHLD)", unix.SYS_CLONE, []uint64{sigchld}, retAllow},
		{"clone(thread flags)", unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD}, retAllow},
		{"clone(CLONE_NEWUSER)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER | sigchld}, errnoEPERM},
		{"clone(CLONE_NEWNET)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWNET}, errnoEPERM},
		{"clone(CLONE_NEWNS)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWNS}, errnoEPERM},
		{"clone(CLONE_NEWTIME)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWTIME}, errnoEPERM},
		{"clone3", unix.SYS_CLONE3, nil, errnoENOSYS},
		{"ioctl(TIOCSTI)", unix.SYS_IOCTL, []uint64{0, unix.TIOCSTI}, errnoEPERM},
		{"ioctl(TIOCSTI | 1<<32)", unix.SYS_IOCTL, []uint64{0, 1<<32 | unix.TIOCSTI}, errnoEPERM},
		{"ioctl(TIOCLINUX)", unix.SYS_IOCTL, []uint64{0, unix.TIOCLINUX}, errnoEPERM},
		{"ioctl(TCGETS)", unix.SYS_IOCTL, []uint64{0, unix.TCGETS}, retAllow},
	})
}

func TestDenylistRefusesEveryListedSyscall(t *testing.T) {
	p := WorkerDenylist()
	prog, _ := exportFilter(t, p)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, r := range p.Rules {
		if len(r.Args) > 0 {
			continue // conditional rules have tests of their own
		}
		nr := mustSyscall(t, r.Syscall)
		for range 10 {
			got, err := run(prog, seccompData(auditArchX86_64, nr, rng.Uint64(), rng.Uint64(), rng.Uint64()))
			if err != nil {
				t.Fatal(err)
			}
			if w := want(r.Action, r.Errno); got != w {
				t.Fatalf("%s (%d) = %s, want %s", r.Syscall, nr, verdictString(got), verdictString(w))
			}
		}
	}
	// Spot-check that libseccomp's numbers are the ones Go calls with.
	for name, goNr := range map[string]int{"ptrace": unix.SYS_PTRACE, "mount": unix.SYS_MOUNT, "unshare": unix.SYS_UNSHARE,
		"setresuid": unix.SYS_SETRESUID, "open_tree": unix.SYS_OPEN_TREE, "futex": unix.SYS_FUTEX, "epoll_pwait": unix.SYS_EPOLL_PWAIT} {
		if nr := mustSyscall(t, name); int(nr) != goNr {
			t.Errorf("libseccomp numbers %s %d, Go %d", name, nr, goNr)
		}
	}
}

func TestCompiledFiltersKillOtherABIs(t *testing.T) {
	for mode, get := range workerPolicies {
		prog, _ := exportFilter(t, get())
		cases := map[string][]byte{
			"i386 mount":   seccompData(auditArchI386, 21),
			"i386 getpid":  seccompData(auditArchI386, 20),
			"i386 setuid":  seccompData(auditArchI386, 23),
			"unknown arch": seccompData(0xdead, unix.SYS_GETPID),
		}
		// x32 shares the x86_64 audit arch and sets bit 30 of the number;
		// x32 numbers exist for calls both policies allow and refuse,
		// and 512-547 are x32's own (execve is 520).
		for _, nr := range []int32{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_FUTEX, unix.SYS_GETPID, unix.SYS_SETUID,
			unix.SYS_PTRACE, unix.SYS_BPF, unix.SYS_MMAP, 520, 521, 547} {
			cases[fmt.Sprintf("x32 syscall %d", nr)] = seccompData(auditArchX86_64, x32SyscallBit|nr)
		}
		for name, data := range cases {
			got, err := run(prog, data)
			if err != nil {
				t.Fatal(err)
			}
			if got != retKillProcess {
				t.Errorf("%s: %s = %s, want KILL_PROCESS", mode, name, verdictString(got))
			}
		}
	}
}

func TestBuildSkipsSyscallsThisArchitectureLacks(t *testing.T) {
	p := Policy{Name: "t", Default: Allow, Rules: []Rule{
		{Syscall: "no_such_syscall", Action: Errno, Errno: unix.EPERM, Why: "test"},
		{Syscall: "socketcall", Action: Errno, Errno: unix.EPERM, Why: "test: exists on i386 only"},
		{Syscall: "ptrace", Action: Errno, Errno: unix.EPERM, Why: "test"},
	}}
	prog, report := exportFilter(t, p)
	if !slices.Equal(report.Skipped, []string{"no_such_syscall", "socketcall"}) {
		t.Fatalf("skipped %v, want [no_such_syscall socketcall]", report.Skipped)
	}
	if report.Rules != 1 || report.Policy != "t" {
		t.Fatalf("report %+v, want 1 rule for policy t", report)
	}
	got, err := run(prog, seccompData(auditArchX86_64, unix.SYS_PTRACE))
	if err != nil || got != errnoEPERM {
		t.Fatalf("ptrace = %s, %v; want ERRNO(1)", verdictString(got), err)
	}
}

func TestBuildHonoursPerRuleErrno(t *testing.T) {
	prog, _ := exportFilter(t, Policy{Name: "t", Default: Kill, Rules: []Rule{
		{Syscall: "clone3", Action: Errno, Errno: unix.ENOSYS, Why: "test"},
		{Syscall: "ioctl", Action: Errno, Errno: unix.ENOTTY, Why: "test"},
	}})
	for nr, w := range map[int32]uint32{unix.SYS_CLONE3: errnoENOSYS, unix.SYS_IOCTL: retErrno | uint32(unix.ENOTTY), unix.SYS_GETPID: retTrap} {
		got, err := run(prog, seccompData(auditArchX86_64, nr))
		if err != nil || got != w {
			t.Fatalf("syscall %d = %s, %v; want %s", nr, verdictString(got), err, verdictString(w))
		}
	}
}
