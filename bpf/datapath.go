// Package bpf holds the eBPF datapath (pcisegment.c, compiled by bpf2go into
// the committed datapath_bpfel.{go,o}) and the Go side of its maps: which
// maps exist, how big, what a received map fd must look like, and the check
// twin that asks the kernel for a verdict without touching live state.
//
// The loader uses Load to create the maps and programs; the worker, which
// never creates maps or loads programs, receives the map fds and uses Check.
// Writing a policy into the maps is package datapath's, so that nothing the
// loader imports knows the policy language.
package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Layout names the version of the map and pin layout. Pins live in a
// directory of this name, so a binary never silently reuses pins of another
// layout.
//
// A variable, not a constant, only so that the upgrade test can build a
// binary of another layout (go build -ldflags -X ...bpf.Layout=v3).
var Layout = "v2"

// LayoutVersion is Layout as stored in the info map.
const LayoutVersion = 2

// Direction indices, as in the datapath.
const (
	DirIngress = 0
	DirEgress  = 1
)

// Drop reasons, as in enum reason of pcisegment.c.
const (
	ReasonNoRule      = 1
	ReasonEthertype   = 2
	ReasonMalformed   = 3
	ReasonUnsupported = 4
	ReasonRevoked     = 5
	ReasonFragment    = 6
)

// Reasons lists every drop reason.
var Reasons = []uint8{ReasonNoRule, ReasonEthertype, ReasonMalformed, ReasonUnsupported, ReasonRevoked, ReasonFragment}

// ReasonName is the name used in audit records and metrics.
func ReasonName(r uint8) string {
	switch r {
	case ReasonNoRule:
		return "no_rule"
	case ReasonEthertype:
		return "ethertype"
	case ReasonMalformed:
		return "malformed"
	case ReasonUnsupported:
		return "unsupported"
	case ReasonRevoked:
		return "revoked"
	case ReasonFragment:
		return "fragment"
	}
	return fmt.Sprintf("reason_%d", r)
}

// Counter slots, as in pcisegment.c.
const (
	CounterEventsLost = 4
	counterReasonBase = 8
)

// CounterVerdict is the slot counting packets of a direction and verdict.
func CounterVerdict(dir int, deny bool) uint32 {
	if deny {
		return uint32(dir*2 + 1)
	}
	return uint32(dir * 2)
}

// CounterMonitor is the slot counting packets of a direction that the
// policy denies and monitor mode lets pass.
func CounterMonitor(dir int) uint32 { return uint32(5 + dir) }

// CounterReason is the slot counting drops for a reason.
func CounterReason(r uint8) uint32 { return counterReasonBase + uint32(r) }

// WorkerMaps lists, in the order the loader sends them, the maps the worker
// receives. The loader keeps the programs; the worker gets nothing else.
var WorkerMaps = []string{
	DatapathMapAddr4,
	DatapathMapAddr6,
	DatapathMapPorts,
	DatapathMapSelector,
	DatapathMapHalves,
	DatapathMapInfo,
	DatapathMapCounters,
	DatapathMapEvents,
	DatapathMapBarrier,
	DatapathMapBarrierInner,
	DatapathMapPolicyHits,
	DatapathMapConntrack,
}

// MaxPolicies is how many policies one set may hold: the per-policy match
// counters (policy_hits) have this many slots per half, as in pcisegment.c.
const MaxPolicies = 4096

// WorkerReadOnly are the maps the worker gets read-only descriptors of: it
// reports the counters but must not be able to reset them.
var WorkerReadOnly = map[string]bool{DatapathMapCounters: true,
	// Read for the metrics (how full it is); the datapath alone writes it.
	DatapathMapConntrack: true}

// Sizes are the capacities fixed when the loader starts (enforce's
// --max-prefixes, --max-port-entries and --max-flows). Each is what one
// policy set, or the host's connections, may use; the maps are sized from
// them, so that nothing is preallocated for capacity a host does not ask
// for and no policy set is cut short by a compiled-in limit.
type Sizes struct {
	// Prefixes is how many address entries, IPv4 and IPv6 together, one
	// policy set may compile to. Each address trie holds both halves, so
	// it gets twice this.
	Prefixes int
	// PortEntries is how many port allowances one policy set may compile
	// to; the port trie gets twice this.
	PortEntries int
	// Flows is how many connections are tracked at once; each takes two
	// entries (its own tuple and its reply's).
	Flows int
}

// DefaultSizes hold 100,000 prefixes across a policy set with room to
// spare (excepts and "any peer" rules add entries), the port entries such
// a set compiles to even when its rules do not share ports (a class per
// distinct set of overlapping rules, each with its rules' ports:
// policy.Synthetic(100_000) needs about 600,000), and the connections of a
// busy server. The tries allocate per entry, so unused capacity costs no
// memory.
var DefaultSizes = Sizes{Prefixes: 200_000, PortEntries: 1_000_000, Flows: 32_768}

// Upper bounds of Sizes: beyond them a typo, not a plan. The address and
// port tries allocate per entry, so their bound is generous; connection
// tracking is preallocated (about 120 bytes an entry), so its bound is
// about half a gigabyte.
const (
	MaxSizePrefixes    = 1 << 24
	MaxSizePortEntries = 1 << 24
	MaxSizeFlows       = 1 << 21
)

// OrDefault fills in zero fields from DefaultSizes.
func (s Sizes) OrDefault() Sizes {
	if s.Prefixes == 0 {
		s.Prefixes = DefaultSizes.Prefixes
	}
	if s.PortEntries == 0 {
		s.PortEntries = DefaultSizes.PortEntries
	}
	if s.Flows == 0 {
		s.Flows = DefaultSizes.Flows
	}
	return s
}

// Validate reports a size out of bounds, naming its flag.
func (s Sizes) Validate() error {
	for _, f := range []struct {
		flag   string
		v, max int
	}{
		{"--max-prefixes", s.Prefixes, MaxSizePrefixes},
		{"--max-port-entries", s.PortEntries, MaxSizePortEntries},
		{"--max-flows", s.Flows, MaxSizeFlows},
	} {
		if f.v < 1 || f.v > f.max {
			return fmt.Errorf("%s %d: must be between 1 and %d", f.flag, f.v, f.max)
		}
	}
	return nil
}

// maxEntries is the capacity of the datapath map name under s, or 0 for a
// map whose size does not depend on s.
func (s Sizes) maxEntries(name string) uint32 {
	switch name {
	case DatapathMapAddr4, DatapathMapAddr6:
		return uint32(2 * s.Prefixes)
	case DatapathMapPorts:
		return uint32(2 * s.PortEntries)
	case DatapathMapConntrack:
		return uint32(2 * s.Flows)
	}
	return 0
}

// Spec returns the datapath's collection spec, with the map sizes compiled
// into the object (DefaultSizes).
func Spec() (*ebpf.CollectionSpec, error) {
	return SpecWithSizes(DefaultSizes)
}

// SpecWithSizes returns the datapath's collection spec with its maps sized
// for s.
func SpecWithSizes(s Sizes) (*ebpf.CollectionSpec, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	spec, err := LoadDatapath()
	if err != nil {
		return nil, fmt.Errorf("read embedded datapath object: %w", err)
	}
	for name, m := range spec.Maps {
		if n := s.maxEntries(name); n != 0 {
			m.MaxEntries = n
		}
	}
	return spec, nil
}

// Load creates the maps, sized DefaultSizes, and loads both programs.
func Load() (*DatapathObjects, error) {
	return LoadWithSizes(DefaultSizes)
}

// LoadWithSizes creates the maps, sized for s, and loads both programs.
func LoadWithSizes(s Sizes) (*DatapathObjects, error) {
	spec, err := SpecWithSizes(s)
	if err != nil {
		return nil, err
	}
	var objs DatapathObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load datapath: %+v", verr)
		}
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	return &objs, objs.shedBTF()
}

// LoadOver loads both programs over maps that exist already, the pins of a
// running or an earlier instance of this layout, so that the new programs
// share them: the policy in force, connection tracking and the counters
// carry on. Each map is checked against s first; maps holds them all.
func LoadOver(s Sizes, maps map[string]*ebpf.Map) (*DatapathObjects, error) {
	spec, err := SpecWithSizes(s)
	if err != nil {
		return nil, err
	}
	// The datapath's own maps; the programs' global data (.bss, .rodata)
	// is never pinned and comes fresh.
	for name := range (&DatapathMaps{}).All() {
		m, ok := maps[name]
		if !ok {
			return nil, fmt.Errorf("adopt pinned maps: %s is missing", name)
		}
		if err := Check(m, name, s); err != nil {
			return nil, fmt.Errorf("adopt pinned maps (start with the --max-* flags they were made with, or --replace): %w", err)
		}
	}
	var objs DatapathObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: maps}); err != nil {
		return nil, fmt.Errorf("load datapath over pinned maps: %w", err)
	}
	return &objs, objs.shedBTF()
}

// shedBTF swaps each program for a handle on the same kernel program
// without the descriptor of the BTF it was loaded with, which
// ebpf.Program keeps open: the kernel holds its own reference, and the
// loader keeps only descriptors it uses.
func (o *DatapathObjects) shedBTF() error {
	for _, p := range []**ebpf.Program{&o.PciIngress, &o.PciEgress} {
		fd, err := unix.FcntlInt(uintptr((*p).FD()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			o.Close()
			return fmt.Errorf("duplicate program descriptor: %w", err)
		}
		q, err := ebpf.NewProgramFromFD(fd) // closes fd on error
		if err != nil {
			o.Close()
			return fmt.Errorf("reopen program: %w", err)
		}
		(*p).Close()
		*p = q
	}
	return nil
}

// All returns every map of the datapath by name, for pinning.
func (m *DatapathMaps) All() map[string]*ebpf.Map {
	return map[string]*ebpf.Map{
		DatapathMapAddr4:     m.Addr4,
		DatapathMapAddr6:     m.Addr6,
		DatapathMapPorts:     m.Ports,
		DatapathMapSelector:  m.Selector,
		DatapathMapHalves:    m.Halves,
		DatapathMapInfo:      m.Info,
		DatapathMapConntrack: m.Conntrack,
		DatapathMapFrags:     m.Frags,
		DatapathMapCounters:  m.Counters,
		DatapathMapEvents:    m.Events,
		DatapathMapBarrier:   m.Barrier,
		// The barrier's inner map, held by slot 0.
		DatapathMapBarrierInner: m.BarrierInner,
		DatapathMapPolicyHits:   m.PolicyHits,
	}
}

// Set assigns every map from byName, which must hold exactly the datapath's.
func (m *DatapathMaps) Set(byName map[string]*ebpf.Map) error {
	for name, p := range map[string]**ebpf.Map{
		DatapathMapAddr4: &m.Addr4, DatapathMapAddr6: &m.Addr6, DatapathMapPorts: &m.Ports,
		DatapathMapSelector: &m.Selector, DatapathMapHalves: &m.Halves, DatapathMapInfo: &m.Info,
		DatapathMapConntrack: &m.Conntrack, DatapathMapFrags: &m.Frags, DatapathMapCounters: &m.Counters,
		DatapathMapEvents: &m.Events, DatapathMapBarrier: &m.Barrier, DatapathMapBarrierInner: &m.BarrierInner,
		DatapathMapPolicyHits: &m.PolicyHits,
	} {
		if *p = byName[name]; *p == nil {
			return fmt.Errorf("datapath map %q missing", name)
		}
	}
	if len(byName) != len(m.All()) {
		return fmt.Errorf("%d maps given, the datapath has %d", len(byName), len(m.All()))
	}
	return nil
}

// ByName returns the map of objs with the given name.
func (m *DatapathMaps) ByName(name string) (*ebpf.Map, error) {
	if mp := m.All()[name]; mp != nil {
		return mp, nil
	}
	return nil, fmt.Errorf("no datapath map named %q", name)
}

// Check verifies that m, received from elsewhere, is the datapath map called
// name as the loader created it for sizes s: same type, key and value
// sizes, kernel-side name, and exactly the capacity s gives it. A fd that
// fails this is not used.
func Check(m *ebpf.Map, name string, s Sizes) error {
	spec, err := SpecWithSizes(s)
	if err != nil {
		return fmt.Errorf("check map %q: %w", name, err)
	}
	want, ok := spec.Maps[name]
	if !ok {
		return fmt.Errorf("check map %q: not a datapath map", name)
	}
	info, err := m.Info()
	if err != nil {
		return fmt.Errorf("check map %q: read info: %w", name, err)
	}
	switch {
	case info.Type != want.Type:
		return fmt.Errorf("check map %q: type %s, want %s", name, info.Type, want.Type)
	case info.KeySize != want.KeySize:
		return fmt.Errorf("check map %q: key size %d, want %d", name, info.KeySize, want.KeySize)
	case info.ValueSize != want.ValueSize:
		return fmt.Errorf("check map %q: value size %d, want %d", name, info.ValueSize, want.ValueSize)
	case info.MaxEntries != want.MaxEntries:
		return fmt.Errorf("check map %q: capacity %d, want %d", name, info.MaxEntries, want.MaxEntries)
	case info.Name != name:
		return fmt.Errorf("check map %q: kernel name %q", name, info.Name)
	}
	return nil
}
