package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Return values of the tcx programs as BPF_PROG_TEST_RUN reports them (a
// u32): TCX_NEXT is -1.
const (
	RetNext = 0xffffffff // TCX_NEXT: allowed, later programs run
	RetDrop = 2          // TCX_DROP
)

// TwinPolicyMaps are the maps a twin cannot judge without: it must read the
// policy in force, not a copy.
var TwinPolicyMaps = []string{
	DatapathMapAddr4,
	DatapathMapAddr6,
	DatapathMapPorts,
	DatapathMapSelector,
	DatapathMapHalves,
}

// Twin is the check-mode copy of the datapath: the same programs, loaded
// with check_mode set, reading the policy maps of the loaded datapath. It
// keeps no connection-tracking or fragment state, counts nothing and emits
// no events, so running a crafted packet through it (BPF_PROG_TEST_RUN)
// leaves the live datapath as it was.
//
// Because it keeps no state, the twin judges every packet as the first of
// its flow: a reply is judged as a new packet in its own direction, and a
// later fragment, whose first fragment it never saw, is dropped in a
// governed direction. Ask about the packet that opens the flow, or about a
// first fragment, instead.
//
// The programs come from this binary, not from the kernel: a twin answers
// for the running datapath only when both were built from the same source,
// which the layout version of the pin directory approximates.
type Twin struct {
	ingress, egress *ebpf.Program
}

// LoadTwin loads a twin sharing the maps in m. The policy maps (addr4,
// addr6, ports, selector, halves) are required; every other non-nil map is
// shared too, so nothing the live datapath holds is created twice. A state
// map left nil gets a minimal private placeholder: the verifier needs it to
// exist, and check mode never touches it.
//
// The caller may close the maps in m once LoadTwin returns; the twin's
// programs keep their own references.
func LoadTwin(m *DatapathMaps) (*Twin, error) {
	if m == nil {
		return nil, errors.New("load twin: no datapath maps")
	}
	shared := make(map[string]*ebpf.Map)
	for name, mp := range m.All() {
		if mp != nil {
			shared[name] = mp
		}
	}
	return loadTwin(shared)
}

// LoadTwinPinned loads a twin sharing the maps pinned by `pci-segment
// enforce` under pinDir (in its layout directory, pinDir/v1). The pins are
// opened read-only and only read. Opening them needs root.
func LoadTwinPinned(pinDir string) (*Twin, error) {
	dir := filepath.Join(pinDir, Layout)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no pinned datapath in %s: is `pci-segment enforce` running, "+
				"and with this --pin-dir?", dir)
		}
		return nil, fmt.Errorf("open pin directory %s: %w", dir, err)
	}
	spec, err := Spec()
	if err != nil {
		return nil, err
	}
	shared := make(map[string]*ebpf.Map)
	defer func() {
		for _, mp := range shared {
			mp.Close()
		}
	}()
	for name := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue // .rodata and friends: the twin's own
		}
		p := filepath.Join(dir, name)
		mp, err := ebpf.LoadPinnedMap(p, &ebpf.LoadPinOptions{ReadOnly: true})
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // a state map the loader does not pin; a policy map is checked below
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("open pinned map %s: %w (opening pins needs root)", p, err)
		case err != nil:
			return nil, fmt.Errorf("open pinned map %s: %w", p, err)
		}
		shared[name] = mp
	}
	for _, name := range TwinPolicyMaps {
		if shared[name] == nil {
			return nil, fmt.Errorf("no pinned map %s in %s: the pins are incomplete or of another "+
				"version; is `pci-segment enforce` running?", name, dir)
		}
	}
	return loadTwin(shared)
}

// loadTwin loads both programs with check_mode set and the given maps
// replacing the spec's. The maps stay the caller's.
func loadTwin(shared map[string]*ebpf.Map) (*Twin, error) {
	for _, name := range TwinPolicyMaps {
		if shared[name] == nil {
			return nil, fmt.Errorf("load twin: policy map %s missing", name)
		}
	}
	spec, err := Spec()
	if err != nil {
		return nil, err
	}
	v, ok := spec.Variables[DatapathVarCheckMode]
	if !ok {
		return nil, fmt.Errorf("load twin: datapath has no %s constant", DatapathVarCheckMode)
	}
	if err := v.Set(uint8(1)); err != nil {
		return nil, fmt.Errorf("load twin: set %s: %w", DatapathVarCheckMode, err)
	}

	for name, ms := range spec.Maps {
		if strings.HasPrefix(name, ".") {
			continue
		}
		mp, ok := shared[name]
		if !ok {
			shrinkPlaceholder(ms)
			continue
		}
		info, err := mp.Info()
		if err != nil {
			return nil, fmt.Errorf("load twin: read info of map %s: %w", name, err)
		}
		if info.Name != name {
			return nil, fmt.Errorf("load twin: map given as %s is called %q in the kernel", name, info.Name)
		}
		// Capacity is the loader's choice; type, key, value and flags
		// must still be the spec's (MapReplacements checks them).
		ms.MaxEntries = mp.MaxEntries()
	}

	var objs struct {
		Ingress *ebpf.Program `ebpf:"pci_ingress"`
		Egress  *ebpf.Program `ebpf:"pci_egress"`
	}
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: shared})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load twin: %+v", verr)
		}
		return nil, fmt.Errorf("load twin: %w", err)
	}
	return &Twin{ingress: objs.Ingress, egress: objs.Egress}, nil
}

// shrinkPlaceholder makes a state map the twin creates for itself as small
// as the kernel allows: check mode never reads or writes it.
func shrinkPlaceholder(ms *ebpf.MapSpec) {
	switch ms.Type {
	case ebpf.RingBuf:
		ms.MaxEntries = uint32(os.Getpagesize())
	case ebpf.Hash, ebpf.LRUHash, ebpf.LRUCPUHash, ebpf.PerCPUHash:
		ms.MaxEntries = 1
	}
}

// Verdict runs p through the twin's program for dir and reports whether the
// datapath would let it through: TCX_NEXT is allow, TCX_DROP deny, anything
// else an error.
func (t *Twin) Verdict(egress bool, p Packet) (bool, error) {
	prog, dir := t.ingress, "ingress"
	if egress {
		prog, dir = t.egress, "egress"
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: p.Frame()})
	if err != nil {
		return false, fmt.Errorf("test run of the %s twin: %w", dir, err)
	}
	switch ret {
	case RetNext:
		return true, nil
	case RetDrop:
		return false, nil
	}
	return false, fmt.Errorf("%s twin returned %d, neither TCX_NEXT nor TCX_DROP", dir, int32(ret))
}

// Close unloads the twin. The shared maps stay.
// RunningDiffers compares the twin's programs with those attached through
// the link pins under pinDir/v1. Program tags hash the instructions, not
// the load-time constants, so they match when the running datapath is the
// code this binary carries; after an upgrade without a restart of enforce
// they may not, and then the twin's verdict is this binary's, not the
// running program's. It returns a description of each difference, or nil.
func (t *Twin) RunningDiffers(pinDir string) ([]string, error) {
	dir := filepath.Join(pinDir, Layout)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pins: %w", err)
	}
	want := map[ebpf.AttachType]*ebpf.Program{ebpf.AttachTCXIngress: t.ingress, ebpf.AttachTCXEgress: t.egress}
	var diffs []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "link_") {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			return nil, fmt.Errorf("open pinned link %s: %w", e.Name(), err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("read pinned link %s: %w", e.Name(), err)
		}
		tcx := info.TCX()
		if tcx == nil {
			continue
		}
		running, err := ebpf.NewProgramFromID(info.Program)
		if err != nil {
			return nil, fmt.Errorf("open the program of %s: %w", e.Name(), err)
		}
		ri, err := running.Info()
		running.Close()
		if err != nil {
			return nil, fmt.Errorf("read the program of %s: %w", e.Name(), err)
		}
		twin, ok := want[ebpf.AttachType(tcx.AttachType)]
		if !ok {
			continue
		}
		ti, err := twin.Info()
		if err != nil {
			return nil, fmt.Errorf("read the twin: %w", err)
		}
		if ri.Tag != ti.Tag {
			diffs = append(diffs, fmt.Sprintf("%s runs program tag %s, this binary's is %s", e.Name(), ri.Tag, ti.Tag))
		}
	}
	return diffs, nil
}

func (t *Twin) Close() error {
	return errors.Join(t.ingress.Close(), t.egress.Close())
}
