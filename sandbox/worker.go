package sandbox

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The worker's policies, by the names the --seccomp flag takes.
const (
	// ModeAllowlist is the default: [WorkerAllowlist].
	ModeAllowlist = "allowlist"
	// ModeDenylist is the hardening guide's allow-by-default list:
	// [WorkerDenylist].
	ModeDenylist = "denylist"
)

// Modes lists the values WorkerPolicy accepts, the default first.
func Modes() []string { return []string{ModeAllowlist, ModeDenylist} }

// WorkerPolicy returns the worker's policy for a --seccomp value.
func WorkerPolicy(mode string) (Policy, error) {
	switch mode {
	case ModeAllowlist:
		return WorkerAllowlist(), nil
	case ModeDenylist:
		return WorkerDenylist(), nil
	}
	return Policy{}, fmt.Errorf("seccomp mode %q: want one of %s", mode, strings.Join(Modes(), ", "))
}

// WorkerAllowlist returns the worker's default policy, a copy the caller
// may change: the calls the worker makes, each with why, and the whole
// process killed on any other.
func WorkerAllowlist() Policy {
	return Policy{Name: ModeAllowlist, Default: Kill, Rules: workerAllowlist}.clone()
}

// WorkerDenylist returns the hardening guide's policy, a copy the caller
// may change: everything allowed except the calls listed, which fail.
func WorkerDenylist() Policy {
	return Policy{Name: ModeDenylist, Default: Allow, Rules: workerDenylist}.clone()
}

// BPFCommand is a bpf(2) command the worker may issue.
type BPFCommand struct {
	Name string
	Cmd  uint32
	Why  string
}

// allowedBPFCommands are all the bpf(2) commands the worker needs: it
// receives map fds from the loader and reads, writes and iterates them.
// Both policies let these through and no other.
var allowedBPFCommands = []BPFCommand{
	{"BPF_MAP_LOOKUP_ELEM", unix.BPF_MAP_LOOKUP_ELEM, "read a policy entry or a counter"},
	{"BPF_MAP_UPDATE_ELEM", unix.BPF_MAP_UPDATE_ELEM, "apply a policy change"},
	{"BPF_MAP_DELETE_ELEM", unix.BPF_MAP_DELETE_ELEM, "remove a policy entry"},
	{"BPF_MAP_GET_NEXT_KEY", unix.BPF_MAP_GET_NEXT_KEY, "iterate a map to list or reconcile it"},
	{"BPF_OBJ_GET_INFO_BY_FD", unix.BPF_OBJ_GET_INFO_BY_FD, "learn a received fd's map type and sizes (ebpf.NewMapFromFD)"},
	{"BPF_MAP_LOOKUP_BATCH", unix.BPF_MAP_LOOKUP_BATCH, "read many entries in one call"},
	{"BPF_MAP_LOOKUP_AND_DELETE_BATCH", unix.BPF_MAP_LOOKUP_AND_DELETE_BATCH, "drain many entries in one call"},
	{"BPF_MAP_UPDATE_BATCH", unix.BPF_MAP_UPDATE_BATCH, "load a whole policy in one call"},
	{"BPF_MAP_DELETE_BATCH", unix.BPF_MAP_DELETE_BATCH, "remove many entries in one call"},
}

// bpfWhy is what every other bpf(2) command would give a compromised worker.
const bpfWhy = "every other command creates, opens (BPF_OBJ_GET), pins, loads, attaches or freezes BPF objects; " +
	"BPF_MAP_FREEZE needs no capability on a held fd and would block every later policy update"

// AllowedBPFCommands returns the bpf(2) commands the worker's policies let
// through; both refuse every other command.
func AllowedBPFCommands() []BPFCommand {
	return slices.Clone(allowedBPFCommands)
}

func bpfCommandNumbers(cmds []BPFCommand) []uint32 {
	n := make([]uint32, len(cmds))
	for i, c := range cmds {
		n[i] = c.Cmd
	}
	return n
}

// namespaceFlags are the clone flags that create namespaces.
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME
