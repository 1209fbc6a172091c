package status

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/pci-segment/pci-segment/confine"
	"github.com/pci-segment/pci-segment/envflag"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/privilege"
)

// procRoot is where processes are looked for; tests point it at a fake
// tree. Privileges are read by package privilege from the real /proc.
var procRoot = "/proc"

// ProcessName is what both processes of an instance are called (comm).
const ProcessName = "pci-segment"

// Process is the loader or the worker.
type Process struct {
	Role    string   `json:"role"`
	PID     int      `json:"pid"`
	PPID    int      `json:"ppid"`
	Cmdline []string `json:"cmdline"`
	// Privileges are absent when /proc/PID/status could not be read.
	*Privileges
	// MACLabel is /proc/PID/attr/current: "none" when no security module
	// provides process labels, "" when it could not be read.
	MACLabel string `json:"mac_label,omitempty"`
	// BPF is nil when the descriptors could not be read (root only).
	BPF *HeldBPF `json:"bpf"`
}

// Privileges are a process's identity and confinement, from
// /proc/PID/status and /proc/PID/task/*/status.
type Privileges struct {
	User   Account   `json:"user"`
	Group  Account   `json:"group"`
	Groups []Account `json:"groups"`
	UIDs   IDs       `json:"uids"`
	GIDs   IDs       `json:"gids"`
	// Capabilities name the bits of CapMasks.
	Capabilities CapSets  `json:"capabilities"`
	CapMasks     CapMasks `json:"cap_masks"`
	NoNewPrivs   bool     `json:"no_new_privs"`
	Seccomp      Seccomp  `json:"seccomp"`
	// Threads counts the threads read; ThreadsDiffer names the first one
	// whose ids, capabilities, NoNewPrivs or seccomp differ from the
	// leader's other than by holding less ("" when none does).
	// ThreadsHoldingLess lists, one line each, the threads that differ
	// only by holding less (privilege.HoldsLess), such as the loader's
	// thread that starts the worker.
	Threads            int      `json:"threads"`
	ThreadsDiffer      string   `json:"threads_differ,omitempty"`
	ThreadsHoldingLess []string `json:"threads_holding_less,omitempty"`
}

// Account is a user or group id and its name ("" when unknown).
type Account struct {
	ID   uint32 `json:"id"`
	Name string `json:"name,omitempty"`
}

func (a Account) String() string {
	if a.Name == "" {
		return strconv.FormatUint(uint64(a.ID), 10)
	}
	return fmt.Sprintf("%s(%d)", a.Name, a.ID)
}

// IDs are the real, effective, saved and file system ids.
type IDs struct {
	Real      uint32 `json:"real"`
	Effective uint32 `json:"effective"`
	Saved     uint32 `json:"saved"`
	FS        uint32 `json:"fs"`
}

// CapSets are the five capability sets by name; empty, not null, when a
// set is empty.
type CapSets struct {
	Effective   []string `json:"effective"`
	Permitted   []string `json:"permitted"`
	Inheritable []string `json:"inheritable"`
	Bounding    []string `json:"bounding"`
	Ambient     []string `json:"ambient"`
}

// CapMasks are the five sets as /proc/PID/status prints them.
type CapMasks struct {
	Effective   Mask `json:"effective"`
	Permitted   Mask `json:"permitted"`
	Inheritable Mask `json:"inheritable"`
	Bounding    Mask `json:"bounding"`
	Ambient     Mask `json:"ambient"`
}

// Mask is a capability mask, 16 hex digits in JSON and text.
type Mask uint64

func (m Mask) String() string { return fmt.Sprintf("%016x", uint64(m)) }

// MarshalText writes the 16 hex digits of the kernel's status file.
func (m Mask) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads them back.
func (m *Mask) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 16, 64)
	*m = Mask(v)
	return err
}

// Seccomp is the seccomp state of the leader thread.
type Seccomp struct {
	// Mode is disabled, strict or filter.
	Mode string `json:"mode"`
	// Filters is the number of attached filters, -1 when the kernel does
	// not say (before 5.9).
	Filters int `json:"filters"`
}

// procInfo is what discovery reads of each pci-segment process.
type procInfo struct {
	pid, ppid, uid int
	args           []string
}

// instance is the loader and worker of one pin directory.
type instance struct {
	loader, worker int
	loaderArgs     []string
	procs          map[int]procInfo
	// others are further loaders naming the same pin directory.
	others []int
	// posers name it too but do not run as root: anyone can start a
	// process called pci-segment with such a command line, and none of
	// them is the loader, nor their children its worker.
	posers []int
}

// findInstance looks for the processes of the instance pinning to pinDir,
// skipping self (status is called pci-segment too).
func findInstance(root, pinDir string, self int) (instance, error) {
	inst := instance{procs: map[int]procInfo{}}
	entries, err := os.ReadDir(root)
	if err != nil {
		return inst, fmt.Errorf("list processes: %w", err)
	}
	var loaders []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join(root, e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		if err != nil || strings.TrimSuffix(string(comm), "\n") != ProcessName {
			continue // gone, hidden, or another program
		}
		info, err := readProcInfo(dir, pid)
		if err != nil {
			continue
		}
		inst.procs[pid] = info
		if subcommand(info.args) == "enforce" && samePath(flagOf(info.args, "--pin-dir", pins.DefaultDir), pinDir) {
			if info.uid != 0 {
				inst.posers = append(inst.posers, pid)
				continue
			}
			loaders = append(loaders, pid)
		}
	}
	if len(loaders) == 0 {
		return inst, nil
	}
	slices.Sort(loaders)
	// The one holding the directory's lock (the kernel's record) first.
	if i := slices.Index(loaders, pins.Holder(pinDir)); i > 0 {
		loaders[0], loaders[i] = loaders[i], loaders[0]
	}
	inst.loader, inst.others = loaders[0], loaders[1:]
	inst.loaderArgs = inst.procs[inst.loader].args
	var workers []int
	for pid, p := range inst.procs {
		if p.ppid == inst.loader && subcommand(p.args) == "worker" {
			workers = append(workers, pid)
		}
	}
	if len(workers) > 0 {
		slices.Sort(workers)
		inst.worker = workers[0]
	}
	return inst, nil
}

func readProcInfo(dir string, pid int) (procInfo, error) {
	info := procInfo{pid: pid}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return info, err
	}
	info.args = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	st, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return info, err
	}
	found := 0
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:\t"); ok {
			if info.ppid, err = strconv.Atoi(v); err != nil {
				return info, err
			}
			found++
		}
		if v, ok := strings.CutPrefix(line, "Uid:\t"); ok {
			real, _, _ := strings.Cut(v, "\t")
			if info.uid, err = strconv.Atoi(real); err != nil {
				return info, err
			}
			found++
		}
	}
	if found != 2 {
		return info, errors.New("no PPid or Uid line in " + dir + "/status")
	}
	return info, nil
}

// subcommand is the first argument after the program name that is not a
// flag or a global flag's value.
func subcommand(args []string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--log-level":
			i++
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}

// flagOf is the value of a command line's flag, or def.
func flagOf(args []string, flag, def string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return def
}

func samePath(a, b string) bool { return filepath.Clean(a) == filepath.Clean(b) }

// process reads one process of the instance.
func (g *gatherer) process(role string, pid int, info procInfo) *Process {
	p := &Process{Role: role, PID: pid, PPID: info.ppid, Cmdline: info.args}
	what := fmt.Sprintf("%s (pid %d)", role, pid)
	if priv, err := privilege.ReadProcess(pid); err != nil {
		g.unavailable(what+": identity and confinement (/proc/PID/status)", err)
	} else {
		p.Privileges = privileges(priv)
	}
	label, err := macLabel(pid)
	if err != nil {
		g.unavailable(what+": MAC label (/proc/PID/attr/current)", err)
	}
	p.MACLabel = label
	held, err := heldBPF(pid)
	if err != nil {
		g.unavailable(what+": BPF objects it holds (/proc/PID/fd, /proc/PID/fdinfo)", err)
	} else {
		p.BPF = held
	}
	return p
}

func privileges(pr privilege.Process) *Privileges {
	p := &Privileges{
		User:    Account{ID: pr.UID.Real, Name: userName(pr.UID.Real)},
		Group:   Account{ID: pr.GID.Real, Name: groupName(pr.GID.Real)},
		Groups:  []Account{},
		UIDs:    IDs(pr.UID),
		GIDs:    IDs(pr.GID),
		Threads: len(pr.Threads),
		CapMasks: CapMasks{
			Effective: Mask(pr.CapEff), Permitted: Mask(pr.CapPrm), Inheritable: Mask(pr.CapInh),
			Bounding: Mask(pr.CapBnd), Ambient: Mask(pr.CapAmb),
		},
		Capabilities: CapSets{
			Effective: capNames(pr.CapEff), Permitted: capNames(pr.CapPrm), Inheritable: capNames(pr.CapInh),
			Bounding: capNames(pr.CapBnd), Ambient: capNames(pr.CapAmb),
		},
		NoNewPrivs: pr.NoNewPrivs,
		Seccomp:    Seccomp{Mode: pr.Seccomp.String(), Filters: pr.SeccompFilters},
	}
	for _, g := range pr.Groups {
		p.Groups = append(p.Groups, Account{ID: g, Name: groupName(g)})
	}
	for _, t := range pr.Threads {
		d := privilege.Diff(pr.ThreadState, t)
		switch {
		case d == "":
		case privilege.HoldsLess(pr.ThreadState, t):
			p.ThreadsHoldingLess = append(p.ThreadsHoldingLess, fmt.Sprintf("thread %d: %s", t.TID, d))
		case p.ThreadsDiffer == "":
			p.ThreadsDiffer = fmt.Sprintf("thread %d of process %d differs from the leader: %s", t.TID, pr.TGID, d)
		}
	}
	return p
}

func capNames(mask uint64) []string {
	if n := privilege.CapNames(mask); n != nil {
		return n
	}
	return []string{}
}

func userName(id uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		return ""
	}
	return u.Username
}

func groupName(id uint32) string {
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(id), 10))
	if err != nil {
		return ""
	}
	return g.Name
}

// macLabel reads the process's security label. EINVAL and ENOENT mean no
// module provides one.
func macLabel(pid int) (string, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "attr", "current"))
	switch {
	case errors.Is(err, syscall.EINVAL), errors.Is(err, fs.ErrNotExist):
		return "none", nil
	case err != nil:
		return "", err
	}
	label := strings.TrimRight(string(b), "\x00\n")
	if label == "" {
		return "none", nil
	}
	return label, nil
}

// overrideNames are the development overrides of the hardening guide and
// DESIGN.md; the booleans are in effect only when true.
var overrideNames = []struct {
	name    string
	boolean bool
}{
	{"PCI_SEGMENT_SKIP_PRIVILEGE_DROP", true},
	{"PCI_SEGMENT_PRIVILEGE_USER", false},
	{"PCI_SEGMENT_PRIVILEGE_GROUP", false},
	{"PCI_SEGMENT_DISABLE_SECCOMP", true},
	{"PCI_SEGMENT_SELINUX_PROFILE", false},
	{"PCI_SEGMENT_APPARMOR_PROFILE", false},
	{"PCI_SEGMENT_SKIP_MAC_VERIFY", true},
	{"PCI_SEGMENT_WORKER_SELINUX_PROFILE", false},
	{"PCI_SEGMENT_WORKER_APPARMOR_PROFILE", false},
}

// overrides reads the loader's command line and environment: nil when
// the environment is unreadable and the command line names none.
func (g *gatherer) overrides(pid int, args []string) []Override {
	var out []Override
	if slices.Contains(args, "--allow-root") {
		out = append(out, Override{Name: "--allow-root", InEffect: true, Source: "loader command line"})
	}
	env, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "environ"))
	if err != nil {
		g.unavailable(fmt.Sprintf("development overrides in the loader's environment (pid %d)", pid), err)
		return out
	}
	if out == nil {
		out = []Override{}
	}
	vars := map[string]string{}
	for _, kv := range bytes.Split(env, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			vars[k] = v
		}
	}
	for _, o := range overrideNames {
		v, ok := vars[o.name]
		if !ok || v == "" {
			continue
		}
		ov := Override{Name: o.name, Value: v, InEffect: true, Source: "loader environment"}
		if o.boolean {
			on, err := envflag.ParseBool(o.name, v)
			ov.InEffect, ov.Invalid = on, err != nil
		}
		out = append(out, ov)
	}
	return out
}

// landlock reads the worker's report.
func (g *gatherer) landlock(stateDir string, worker int) *Landlock {
	file := filepath.Join(stateDir, confine.ReportFile)
	r, err := confine.ReadReport(stateDir)
	if errors.Is(err, fs.ErrNotExist) {
		g.unavailable("Landlock applied by the worker ("+file+")",
			errors.New("no report: the worker has not written one (not started yet, or a worker without Landlock support)"))
		return nil
	}
	if err != nil {
		g.unavailable("Landlock applied by the worker ("+file+")", err)
		return nil
	}
	return &Landlock{File: file, Current: worker != 0 && r.PID == worker, Report: &r}
}
