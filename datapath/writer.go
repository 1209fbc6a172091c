// Package datapath writes a compiled policy set into the eBPF datapath's
// maps: the inactive half, then one selector write that makes it live. Its
// tests run the kernel program (BPF_PROG_TEST_RUN) against policies and the
// reference evaluator, and show that the two never disagree. Only the
// worker and the check command use it; the loader never does.
package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/policy"
)

// PolicyMaps are the maps a policy set is written to, and the barrier
// that waits out the programs still reading the half about to be written.
type PolicyMaps struct {
	Addr4, Addr6, Ports, Selector, Halves, Info *ebpf.Map
	Barrier, BarrierInner                       *ebpf.Map
	// PolicyHits counts, per half and policy, the new flows a policy's
	// rules let in; a half's counts are zeroed before it is written.
	PolicyHits *ebpf.Map
	// Monitor writes each set in monitor mode: what it denies is counted
	// and reported as would-be denials, and passes.
	Monitor bool
}

// Writer returns the PolicyMaps among maps, by datapath map name (as the
// worker receives them, or bpf.DatapathMaps.All()).
func Writer(maps map[string]*ebpf.Map) *PolicyMaps {
	return &PolicyMaps{Addr4: maps[bpf.DatapathMapAddr4], Addr6: maps[bpf.DatapathMapAddr6],
		Ports: maps[bpf.DatapathMapPorts], Selector: maps[bpf.DatapathMapSelector],
		Halves: maps[bpf.DatapathMapHalves], Info: maps[bpf.DatapathMapInfo],
		Barrier: maps[bpf.DatapathMapBarrier], BarrierInner: maps[bpf.DatapathMapBarrierInner],
		PolicyHits: maps[bpf.DatapathMapPolicyHits]}
}

// Capacity is what one policy set may use: the tries are shared by both
// halves, so a set gets half of each (see Sizes).
type Capacity struct {
	// Prefixes counts IPv4 and IPv6 address entries together.
	Prefixes, PortEntries int
}

// Capacity reports what one policy set may use, read off the maps.
func (pm *PolicyMaps) Capacity() Capacity {
	return Capacity{
		Prefixes:    int(min(pm.Addr4.MaxEntries(), pm.Addr6.MaxEntries()) / 2),
		PortEntries: int(pm.Ports.MaxEntries() / 2),
	}
}

// Fits reports, when c does not fit capa, what it needs against what the
// datapath holds and the enforce flag that raises it.
func (capa Capacity) Fits(c *policy.Compiled) error {
	var n4, n6 int
	for _, a := range c.Addrs {
		if a.Prefix.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	if n4+n6 > capa.Prefixes {
		return fmt.Errorf("policy set needs %d address prefix entries (%d IPv4, %d IPv6), the datapath holds %d: raise --max-prefixes to at least %d",
			n4+n6, n4, n6, capa.Prefixes, n4+n6)
	}
	if len(c.Policies) > bpf.MaxPolicies {
		return fmt.Errorf("policy set has %d policies selecting this host, the datapath counts matches for %d: merge some", len(c.Policies), bpf.MaxPolicies)
	}
	if len(c.Ports) > capa.PortEntries {
		return fmt.Errorf("policy set needs %d port entries, the datapath holds %d: raise --max-port-entries to at least %d",
			len(c.Ports), capa.PortEntries, len(c.Ports))
	}
	return nil
}

// Active returns the half the datapath reads now.
func (pm *PolicyMaps) Active() (uint32, error) {
	var sel bpf.DatapathSelectorValue
	if err := pm.Selector.Lookup(uint32(0), &sel); err != nil {
		return 0, fmt.Errorf("read selector: %w", err)
	}
	return sel.Active & 1, nil
}

// Apply makes c the policy in force as generation gen: it checks that c fits,
// waits out a grace period, clears and writes the inactive half, then flips
// the selector with a single write. A set that does not fit is refused
// before any map write, so the policy in force stays; a write that fails
// part way leaves the live half and the selector as they were.
//
// The grace period is what makes rewriting the inactive half safe: a packet
// that read the selector before the last flip may still be reading that
// half. Updating the barrier, a map-in-map, returns only once every program
// then running has finished (the kernel's synchronize_rcu), so after it no
// packet can see the half change under it.
func (pm *PolicyMaps) Apply(c *policy.Compiled, gen uint64, setHash [32]byte) error {
	if err := pm.Capacity().Fits(c); err != nil {
		return err
	}
	if pm.Barrier == nil || pm.BarrierInner == nil {
		return errors.New("apply policy set: no grace barrier; the inactive half cannot be rewritten safely")
	}
	if err := pm.Barrier.Put(uint32(0), pm.BarrierInner); err != nil {
		return fmt.Errorf("wait for programs reading the inactive half (barrier): %w", err)
	}
	var n4, n6 int
	for _, a := range c.Addrs {
		if a.Prefix.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}

	active, err := pm.Active()
	if err != nil {
		return err
	}
	half := active ^ 1
	if err := pm.clearHalf(half); err != nil {
		return err
	}
	if err := pm.clearHits(half); err != nil {
		return err
	}

	k4 := make([]bpf.DatapathAddr4Key, 0, n4)
	v4 := make([]bpf.DatapathAddrValue, 0, n4)
	k6 := make([]bpf.DatapathAddr6Key, 0, n6)
	v6 := make([]bpf.DatapathAddrValue, 0, n6)
	for _, a := range c.Addrs {
		addr := a.Prefix.Addr()
		if addr.Is4() {
			k := bpf.DatapathAddr4Key{Prefixlen: 32 + uint32(a.Prefix.Bits()), Half: uint8(half), Dir: uint8(a.Dir)}
			k.Addr = addr.As4()
			k4 = append(k4, k)
			v4 = append(v4, bpf.DatapathAddrValue{Class: a.Class})
		} else {
			k := bpf.DatapathAddr6Key{Prefixlen: 32 + uint32(a.Prefix.Bits()), Half: uint8(half), Dir: uint8(a.Dir)}
			k.Addr = addr.As16()
			k6 = append(k6, k)
			v6 = append(v6, bpf.DatapathAddrValue{Class: a.Class})
		}
	}
	kp := make([]bpf.DatapathPortKey, 0, len(c.Ports))
	vp := make([]bpf.DatapathPortValue, 0, len(c.Ports))
	for _, p := range c.Ports {
		k := bpf.DatapathPortKey{Half: uint8(half), Dir: uint8(p.Dir), Class: p.Class}
		if p.Proto == 0 {
			k.Prefixlen = 64
		} else {
			k.Prefixlen = 64 + 16 + uint32(p.Bits)
			k.Proto = p.Proto
			k.Port = htons(p.Port)
		}
		kp = append(kp, k)
		vp = append(vp, bpf.DatapathPortValue{Policy: p.Policy})
	}
	if err := batchPut(pm.Addr4, k4, v4); err != nil {
		return fmt.Errorf("write IPv4 prefixes: %w", err)
	}
	if err := batchPut(pm.Addr6, k6, v6); err != nil {
		return fmt.Errorf("write IPv6 prefixes: %w", err)
	}
	if err := batchPut(pm.Ports, kp, vp); err != nil {
		return fmt.Errorf("write port allowances: %w", err)
	}

	hc := bpf.DatapathHalfConfig{Generation: gen}
	if pm.Monitor {
		hc.Monitor = 1
	}
	for d, g := range c.Governed {
		if g {
			hc.Governed[d] = 1
		}
	}
	if err := pm.Halves.Put(half, hc); err != nil {
		return fmt.Errorf("write half %d settings: %w", half, err)
	}
	// The info map names the generation before it goes live, so that a
	// writer stopped between here and the flip never lets the next set
	// reuse a generation that was live (the loader starts from it).
	if err := pm.Info.Put(uint32(0), bpf.DatapathInfoValue{Generation: gen, SetHash: setHash, Layout: bpf.LayoutVersion}); err != nil {
		return fmt.Errorf("record generation %d in info map: %w", gen, err)
	}
	// The flip: from here on every new packet reads the new half.
	if err := pm.Selector.Put(uint32(0), bpf.DatapathSelectorValue{Active: half}); err != nil {
		return fmt.Errorf("flip selector to half %d: %w", half, err)
	}
	return nil
}

// clearHits zeroes half's per-policy match counters, so that the set
// written there starts from none (its policy indices are its own).
func (pm *PolicyMaps) clearHits(half uint32) error {
	if pm.PolicyHits == nil {
		return nil
	}
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return err
	}
	keys := make([]uint32, bpf.MaxPolicies)
	zeros := make([]bpf.DatapathPolicyHit, bpf.MaxPolicies*n)
	for i := range keys {
		keys[i] = half*bpf.MaxPolicies + uint32(i)
	}
	if _, err := pm.PolicyHits.BatchUpdate(keys, zeros, nil); err != nil {
		return fmt.Errorf("clear the match counters of half %d: %w", half, err)
	}
	return nil
}

// clearHalf deletes every trie entry of half.
func (pm *PolicyMaps) clearHalf(half uint32) error {
	if err := deleteWhere[bpf.DatapathAddr4Key, bpf.DatapathAddrValue](pm.Addr4, func(k *bpf.DatapathAddr4Key) bool { return uint32(k.Half) == half }); err != nil {
		return fmt.Errorf("clear IPv4 prefixes of half %d: %w", half, err)
	}
	if err := deleteWhere[bpf.DatapathAddr6Key, bpf.DatapathAddrValue](pm.Addr6, func(k *bpf.DatapathAddr6Key) bool { return uint32(k.Half) == half }); err != nil {
		return fmt.Errorf("clear IPv6 prefixes of half %d: %w", half, err)
	}
	if err := deleteWhere[bpf.DatapathPortKey, bpf.DatapathPortValue](pm.Ports, func(k *bpf.DatapathPortKey) bool { return uint32(k.Half) == half }); err != nil {
		return fmt.Errorf("clear port allowances of half %d: %w", half, err)
	}
	return nil
}

// batchChunk is how many entries one batch syscall reads.
const batchChunk = 4096

// deleteWhere deletes m's entries whose key matches, reading and deleting
// in batches where the kernel has them (tries and hashes since 5.6): at
// 100,000 prefixes a key at a time is two syscalls per entry of both
// halves, most of a reload's time.
func deleteWhere[K, V any](m *ebpf.Map, match func(*K) bool) error {
	var dead []K
	keys, vals := make([]K, batchChunk), make([]V, batchChunk)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if match(&keys[i]) {
				dead = append(dead, keys[i])
			}
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			break // the end
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return deleteEach(m, match)
		}
		if err != nil {
			return err
		}
	}
	if len(dead) == 0 {
		return nil
	}
	if _, err := m.BatchDelete(dead, nil); !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := range dead {
		if err := m.Delete(&dead[i]); err != nil {
			return err
		}
	}
	return nil
}

// deleteEach is deleteWhere a key at a time.
func deleteEach[K any](m *ebpf.Map, match func(*K) bool) error {
	var (
		key  K
		dead []K
		val  []byte
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		if match(&key) {
			dead = append(dead, key)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for i := range dead {
		if err := m.Delete(&dead[i]); err != nil {
			return err
		}
	}
	return nil
}

func batchPut[K, V any](m *ebpf.Map, keys []K, vals []V) error {
	if len(keys) == 0 {
		return nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		return err
	}
	return nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
