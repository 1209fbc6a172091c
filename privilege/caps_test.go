package privilege

import (
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/testenv"
)

func TestCapConstantsMatchTheKernelHeaders(t *testing.T) {
	for c, want := range map[Cap]int{
		CapChown: unix.CAP_CHOWN, CapDacOverride: unix.CAP_DAC_OVERRIDE, CapSetuid: unix.CAP_SETUID,
		CapNetAdmin: unix.CAP_NET_ADMIN, CapNetRaw: unix.CAP_NET_RAW, CapSysModule: unix.CAP_SYS_MODULE,
		CapSysPtrace: unix.CAP_SYS_PTRACE, CapSysAdmin: unix.CAP_SYS_ADMIN, CapSysResource: unix.CAP_SYS_RESOURCE,
		CapSetfcap: unix.CAP_SETFCAP, CapMacAdmin: unix.CAP_MAC_ADMIN, CapAuditRead: unix.CAP_AUDIT_READ,
		CapPerfmon: unix.CAP_PERFMON, CapBPF: unix.CAP_BPF, CapCheckpointRestore: unix.CAP_CHECKPOINT_RESTORE,
	} {
		if int(c) != want {
			t.Errorf("%s = %d, kernel headers say %d", c, c, want)
		}
	}
	if LastCap != unix.CAP_LAST_CAP {
		t.Errorf("LastCap = %d, kernel headers say %d", LastCap, unix.CAP_LAST_CAP)
	}
	for c := range LastCap + 1 {
		if capNames[c] == "" {
			t.Errorf("capability %d has no name", c)
		}
	}
}

func TestCapNamesRoundTrip(t *testing.T) {
	for bit := range Cap(64) {
		names := CapNames(CapMask(bit))
		if len(names) != 1 {
			t.Fatalf("CapNames(1<<%d) = %v", bit, names)
		}
		got, err := ParseCap(names[0])
		if err != nil || got != bit {
			t.Fatalf("ParseCap(%q) = %d, %v; want %d", names[0], got, err, bit)
		}
	}
	all := CapNames(^uint64(0))
	if len(all) != 64 {
		t.Fatalf("CapNames(all) has %d names", len(all))
	}
	var back []Cap
	for _, n := range all {
		c, err := ParseCap(n)
		if err != nil {
			t.Fatal(err)
		}
		back = append(back, c)
	}
	if CapMask(back...) != ^uint64(0) {
		t.Fatalf("names of every bit parse back to %x", CapMask(back...))
	}
}

func TestCapNamesSpelling(t *testing.T) {
	if got := CapNames(CapMask(CapBPF, CapNetAdmin, CapPerfmon)); !slices.Equal(got, []string{"cap_net_admin", "cap_perfmon", "cap_bpf"}) {
		t.Fatalf("loader caps = %v", got)
	}
	if got := CapNames(0); got != nil {
		t.Fatalf("CapNames(0) = %v, want nil", got)
	}
	if got := CapNames(1 << 41); !slices.Equal(got, []string{"41"}) {
		t.Fatalf("unnamed bit 41 = %v, want [41] as libcap prints it", got)
	}
	// The root fixture's permitted set lacks only cap_sys_resource.
	names := CapNames(0x000001fffeffffff)
	if len(names) != 40 || slices.Contains(names, "cap_sys_resource") || names[39] != "cap_checkpoint_restore" {
		t.Fatalf("CapNames(0x1fffeffffff) = %v", names)
	}
	for _, in := range []string{"CAP_BPF", "Cap_Bpf", "39"} {
		if c, err := ParseCap(in); err != nil || c != CapBPF {
			t.Errorf("ParseCap(%q) = %v, %v; want cap_bpf", in, c, err)
		}
	}
	for _, in := range []string{"", "bpf", "cap_nope", "64", "-1", "cap_41"} {
		if c, err := ParseCap(in); err == nil {
			t.Errorf("ParseCap(%q) = %v, want an error", in, c)
		}
	}
}

func TestMissingCapsReadsTheCallingThread(t *testing.T) {
	testenv.RequireRoot(t)
	type result struct {
		before, after []string
		err           error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		required := []Cap{CapBPF, CapNetAdmin, CapPerfmon}
		if r.before, r.err = MissingCaps(required); r.err != nil {
			return
		}
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var orig [2]unix.CapUserData
		if r.err = unix.Capget(&hdr, &orig[0]); r.err != nil {
			return
		}
		dropped := orig
		dropped[0].Effective &^= 1 << CapNetAdmin
		dropped[1].Effective &^= 1 << (CapBPF - 32)
		if r.err = unix.Capset(&hdr, &dropped[0]); r.err != nil {
			return
		}
		r.after, r.err = MissingCaps(required)
		// Raise them again: they are still permitted. Should that fail, the
		// thread stays locked and the runtime ends it with this goroutine,
		// unless it is the main thread, which then stays changed and makes
		// TestReadProcessSelf fail.
		if err := unix.Capset(&hdr, &orig[0]); err != nil {
			r.err = err
			return
		}
		runtime.UnlockOSThread()
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.before) != 0 {
		t.Fatalf("root is missing %v", r.before)
	}
	if !slices.Equal(r.after, []string{"cap_bpf", "cap_net_admin"}) {
		t.Fatalf("after dropping cap_bpf and cap_net_admin from the effective set, missing %v", r.after)
	}
	// Other threads kept theirs.
	if missing, err := MissingCaps([]Cap{CapBPF, CapNetAdmin}); err != nil || len(missing) != 0 {
		t.Fatalf("on another thread: missing %v, %v", missing, err)
	}
}

func TestMissingCapsRejectsOutOfRange(t *testing.T) {
	if _, err := MissingCaps([]Cap{64}); err == nil {
		t.Fatal("accepted capability 64")
	}
}
