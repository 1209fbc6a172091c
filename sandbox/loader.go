package sandbox

import (
	"slices"

	"golang.org/x/sys/unix"
)

// loaderNeeds are the denylist's entries the loader cannot live without:
// starting a worker changes identity (set*id, setgroups) and empties the
// forking thread's capability sets (capset); bpf gets its own entry below.
var loaderNeeds = []string{
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
	"setfsuid", "setfsgid", "setgroups", "capset", "bpf",
}

// LoaderPolicy returns the loader's filter for after the datapath is
// loaded: the hardening guide's denylist without the identity calls that
// starting a worker needs, and with bpf() refusing every command that
// creates or loads an object, since the loader has loaded all it ever will.
// A worker the loader starts inherits this filter beneath its own.
func LoaderPolicy() Policy {
	p := Policy{Name: "loader", Default: Allow}
	for _, r := range workerDenylist {
		if !slices.Contains(loaderNeeds, r.Syscall) {
			p.Rules = append(p.Rules, r)
		}
	}
	p.Rules = append(p.Rules, Rule{Syscall: "bpf", Action: Errno, Errno: unix.EPERM,
		Args: []Cond{In(0, unix.BPF_MAP_CREATE, unix.BPF_PROG_LOAD, unix.BPF_BTF_LOAD, unix.BPF_MAP_FREEZE)},
		Why:  "create maps, load programs or BTF, or freeze a map: everything the loader runs was loaded before this filter"})
	return p.clone()
}
