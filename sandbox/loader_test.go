package sandbox

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestLoaderPolicyLetsItStartWorkersButNotLoad(t *testing.T) {
	prog, _ := exportFilter(t, LoaderPolicy())
	eperm := uint32(retErrno) | uint32(unix.EPERM)
	for _, tc := range []struct {
		name string
		nr   int32
		args []uint64
		want uint32
	}{
		{"setgroups (start a worker)", unix.SYS_SETGROUPS, nil, retAllow},
		{"setuid (start a worker)", unix.SYS_SETUID, []uint64{65534}, retAllow},
		{"capset (empty the forking thread)", unix.SYS_CAPSET, nil, retAllow},
		{"execve (the worker)", unix.SYS_EXECVE, nil, retAllow},
		{"bpf LINK_CREATE (attach)", unix.SYS_BPF, []uint64{unix.BPF_LINK_CREATE}, retAllow},
		{"bpf OBJ_PIN", unix.SYS_BPF, []uint64{unix.BPF_OBJ_PIN}, retAllow},
		{"bpf PROG_LOAD", unix.SYS_BPF, []uint64{unix.BPF_PROG_LOAD}, eperm},
		{"bpf PROG_LOAD | 1<<32", unix.SYS_BPF, []uint64{1<<32 | unix.BPF_PROG_LOAD}, eperm},
		{"bpf MAP_CREATE", unix.SYS_BPF, []uint64{unix.BPF_MAP_CREATE}, eperm},
		{"bpf MAP_FREEZE", unix.SYS_BPF, []uint64{unix.BPF_MAP_FREEZE}, eperm},
		{"ptrace", unix.SYS_PTRACE, nil, eperm},
		{"init_module", unix.SYS_INIT_MODULE, nil, eperm},
		{"mount", unix.SYS_MOUNT, nil, eperm},
		{"clone(CLONE_NEWUSER)", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER}, eperm},
	} {
		got, err := run(prog, seccompData(auditArchX86_64, tc.nr, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s = %s, want %s", tc.name, verdictString(got), verdictString(tc.want))
		}
	}
}
