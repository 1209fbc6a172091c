// Package bpf holds the eBPF datapath (pcisegment.c, compiled by bpf2go into
// the committed datapath_bpfel.{go,o}) and the Go side of its maps: which
// maps exist, what a received map fd must look like, and how a compiled
// policy is encoded into the inactive half and made live.
//
// The loader uses Load to create the maps and programs; the worker, which
// never creates maps or loads programs, receives the map fds and uses Check
// and Writer.
package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Layout names the version of the map and pin layout. Pins live in a
// directory of this name, so a binary never silently reuses pins of another
// layout.
const Layout = "v1"

// LayoutVersion is Layout as stored in the info map.
const LayoutVersion = 1

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
)

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
	DatapathMapConntrack,
	DatapathMapCounters,
	DatapathMapEvents,
}

// Spec returns the datapath's collection spec.
func Spec() (*ebpf.CollectionSpec, error) {
	spec, err := LoadDatapath()
	if err != nil {
		return nil, fmt.Errorf("read embedded datapath object: %w", err)
	}
	return spec, nil
}

// Load creates the maps and loads both programs.
func Load() (*DatapathObjects, error) {
	spec, err := Spec()
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
	return &objs, nil
}

// ByName returns the map of objs with the given name.
func (m *DatapathMaps) ByName(name string) (*ebpf.Map, error) {
	switch name {
	case DatapathMapAddr4:
		return m.Addr4, nil
	case DatapathMapAddr6:
		return m.Addr6, nil
	case DatapathMapPorts:
		return m.Ports, nil
	case DatapathMapSelector:
		return m.Selector, nil
	case DatapathMapHalves:
		return m.Halves, nil
	case DatapathMapInfo:
		return m.Info, nil
	case DatapathMapConntrack:
		return m.Conntrack, nil
	case DatapathMapCounters:
		return m.Counters, nil
	case DatapathMapEvents:
		return m.Events, nil
	}
	return nil, fmt.Errorf("no datapath map named %q", name)
}

// Check verifies that m, received from elsewhere, is the datapath map called
// name: same type, key and value sizes, capacity and kernel-side name. A fd
// that fails this is not used.
func Check(m *ebpf.Map, name string) error {
	spec, err := Spec()
	if err != nil {
		return err
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
