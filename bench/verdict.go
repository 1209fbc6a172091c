package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/policy"
)

// The verdict benchmark's addresses. The peer lies in the allowlist's
// first prefix (Prefixes puts PeerPrefix first), the host is the
// destination; OtherAddr lies in none of the prefixes.
var (
	PeerPrefix4 = netip.MustParsePrefix("10.77.1.0/24")
	PeerPrefix6 = netip.MustParsePrefix("fd00:77:1::/64")
	peer4       = netip.MustParseAddr("10.77.1.2")
	peer6       = netip.MustParseAddr("fd00:77:1::2")
	host4       = netip.MustParseAddr("10.77.2.1")
	host6       = netip.MustParseAddr("fd00:77:2::1")
	OtherAddr4  = netip.MustParseAddr("10.99.0.1")
	OtherAddr6  = netip.MustParseAddr("fd00:99::1")
)

// Source ports of the packets asked about. The established flow and the
// new one differ, so that a new-flow packet can never find the
// established flow's conntrack entry, whatever the program does.
const (
	EstablishedSport = 40000
	NewSport         = 40001
)

// PeerPrefix is the peer's prefix of a family.
func PeerPrefix(v6 bool) netip.Prefix {
	if v6 {
		return PeerPrefix6
	}
	return PeerPrefix4
}

// AllowedPacket is an ingress TCP SYN from the peer to Port: what every
// program measured must let through.
func AllowedPacket(v6 bool, sport uint16) bpf.Packet {
	p := bpf.Packet{Src: peer4, Dst: host4, Proto: 6, Sport: sport, Dport: Port}
	if v6 {
		p.Src, p.Dst = peer6, host6
	}
	return p
}

// Loaded is a benchmark program with the maps it reads.
type Loaded struct {
	Prog    *ebpf.Program
	closers []io.Closer
}

// Close unloads the program and its maps.
func (l *Loaded) Close() error {
	errs := []error{l.Prog.Close()}
	for _, c := range l.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Run returns the program's verdict on frame, as BPF_PROG_TEST_RUN
// reports it (bpf.RetNext, bpf.RetDrop).
func Run(prog *ebpf.Program, frame []byte) (uint32, error) {
	ret, err := prog.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		return 0, fmt.Errorf("test run: %w", err)
	}
	return ret, nil
}

func loadProg(spec *ebpf.CollectionSpec, obj any, what string) error {
	if err := spec.LoadAndAssign(obj, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return fmt.Errorf("load %s: %w", what, verr)
		}
		return fmt.Errorf("load %s: %w", what, err)
	}
	return nil
}

// LoadEmpty loads the floor: a tc program that returns TCX_NEXT.
func LoadEmpty() (*Loaded, error) {
	spec, err := LoadProgs()
	if err != nil {
		return nil, err
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"empty"`
	}
	if err := loadProg(spec, &objs, "empty program"); err != nil {
		return nil, err
	}
	return &Loaded{Prog: objs.Prog}, nil
}

// LoadReference loads the reference program with prefixes (of either
// family) as its allowed sources and TCP and UDP to port as its allowed
// destinations.
func LoadReference(prefixes []netip.Prefix, port uint16) (*Loaded, error) {
	var (
		k4 []ProgsRef4Key
		k6 []ProgsRef6Key
	)
	for _, p := range prefixes {
		if p.Addr().Is4() {
			k4 = append(k4, ProgsRef4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()})
		} else {
			k6 = append(k6, ProgsRef6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
		}
	}
	spec, err := LoadProgs()
	if err != nil {
		return nil, err
	}
	spec.Maps[ProgsMapRefAddr4].MaxEntries = uint32(max(1, len(k4)))
	spec.Maps[ProgsMapRefAddr6].MaxEntries = uint32(max(1, len(k6)))
	var objs struct {
		Prog  *ebpf.Program `ebpf:"reference"`
		Addr4 *ebpf.Map     `ebpf:"ref_addr4"`
		Addr6 *ebpf.Map     `ebpf:"ref_addr6"`
		Ports *ebpf.Map     `ebpf:"ref_ports"`
	}
	if err := loadProg(spec, &objs, "reference program"); err != nil {
		return nil, err
	}
	l := &Loaded{Prog: objs.Prog, closers: []io.Closer{objs.Addr4, objs.Addr6, objs.Ports}}
	fill := func() error {
		if err := batchPut(objs.Addr4, k4); err != nil {
			return fmt.Errorf("write IPv4 prefixes: %w", err)
		}
		if err := batchPut(objs.Addr6, k6); err != nil {
			return fmt.Errorf("write IPv6 prefixes: %w", err)
		}
		for _, proto := range []uint8{6, 17} {
			if err := objs.Ports.Put(ProgsRefPortKey{Proto: proto, Port: htons(port)}, uint8(1)); err != nil {
				return fmt.Errorf("write port: %w", err)
			}
		}
		return nil
	}
	if err := fill(); err != nil {
		l.Close()
		return nil, fmt.Errorf("reference program: %w", err)
	}
	return l, nil
}

func batchPut[K any](m *ebpf.Map, keys []K) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, make([]uint8, len(keys)), nil)
	return err
}

// LinearRules are n rules allowing TCP to Port from the IPv4 allowlist's
// prefixes, the peer's last: the allowed packet is judged by a full scan.
func LinearRules(n int) []ProgsRule {
	ps := Prefixes(n, false, PeerPrefix4)
	ps = append(ps[1:], ps[0])
	rules := make([]ProgsRule, len(ps))
	for i, p := range ps {
		a := p.Addr().As4()
		mask := ^uint32(0) << (32 - p.Bits())
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], mask)
		// Stored as the bytes are on the wire.
		rules[i] = ProgsRule{Addr: binary.NativeEndian.Uint32(a[:]), Mask: binary.NativeEndian.Uint32(m[:]),
			Proto: 6, Port: htons(Port)}
	}
	return rules
}

// LoadLinear loads the rule scan over rules. A size the verifier refuses
// returns an error wrapping *ebpf.VerifierError.
func LoadLinear(rules []ProgsRule) (*Loaded, error) {
	spec, err := LoadProgs()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables[ProgsVarNrules].Set(uint32(len(rules))); err != nil {
		return nil, fmt.Errorf("set nrules: %w", err)
	}
	spec.Maps[ProgsMapRules].MaxEntries = uint32(max(1, len(rules)))
	var objs struct {
		Prog  *ebpf.Program `ebpf:"linear"`
		Rules *ebpf.Map     `ebpf:"rules"`
	}
	if err := loadProg(spec, &objs, fmt.Sprintf("linear scan of %d rules", len(rules))); err != nil {
		return nil, err
	}
	l := &Loaded{Prog: objs.Prog, closers: []io.Closer{objs.Rules}}
	keys := make([]uint32, len(rules))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if len(rules) > 0 {
		if _, err := objs.Rules.BatchUpdate(keys, rules, nil); err != nil {
			l.Close()
			return nil, fmt.Errorf("write rules: %w", err)
		}
	}
	return l, nil
}

// OursSizes are the datapath capacities of the verdict benchmark, room for
// the largest allowlist. The tries allocate per entry, so the capacity
// does not change what a lookup costs.
var OursSizes = bpf.Sizes{Prefixes: 200_000, PortEntries: 200_000, Flows: 1024}

// Ours is the real datapath, loaded (not attached), with the allowlist of
// n prefixes of one family in force and the peer's flow from
// EstablishedSport open in its connection tracking.
type Ours struct {
	Objs *bpf.DatapathObjects
	// Check is the ingress program in check mode over the same maps, as
	// bpf.LoadTwin loads it: it keeps no state, so every packet it judges
	// is a new flow.
	Check *ebpf.Program
	v6    bool
}

// LoadOurs loads the datapath, applies Allowlist(n, v6, PeerPrefix(v6))
// through package datapath, loads the check program and opens the
// established flow by running its first packet through the live ingress
// program once.
func LoadOurs(n int, v6 bool) (*Ours, error) {
	yaml := Allowlist(n, v6, PeerPrefix(v6))
	pols, err := policy.Parse("bench.yaml", yaml)
	if err != nil {
		return nil, fmt.Errorf("parse allowlist: %w", err)
	}
	set := &policy.Set{Policies: pols}
	c, err := policy.Compile(set, nil)
	if err != nil {
		return nil, fmt.Errorf("compile allowlist: %w", err)
	}
	objs, err := bpf.LoadWithSizes(OursSizes)
	if err != nil {
		return nil, err
	}
	o := &Ours{Objs: objs, v6: v6}
	if err := o.init(c, set.Hash); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

func (o *Ours) init(c *policy.Compiled, setHash [32]byte) error {
	if err := datapath.Writer(o.Objs.All()).Apply(c, 1, setHash); err != nil {
		return fmt.Errorf("apply allowlist: %w", err)
	}
	// bpf.Twin keeps its programs to itself; this is loadTwin's recipe
	// with every map shared. TestOursCheckIsTheTwin holds the two to the
	// same verdicts.
	spec, err := bpf.SpecWithSizes(OursSizes)
	if err != nil {
		return err
	}
	if err := spec.Variables[bpf.DatapathVarCheckMode].Set(uint8(1)); err != nil {
		return fmt.Errorf("set check mode: %w", err)
	}
	var objs struct {
		Ingress *ebpf.Program `ebpf:"pci_ingress"`
	}
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: o.Objs.All()}); err != nil {
		return fmt.Errorf("load check program: %w", err)
	}
	o.Check = objs.Ingress
	ret, err := Run(o.Objs.PciIngress, o.EstablishedFrame())
	if err != nil {
		return err
	}
	if ret != bpf.RetNext {
		return fmt.Errorf("the live datapath dropped the flow's opening packet (returned %d)", int32(ret))
	}
	return nil
}

// NewFrame is a new flow's first packet, for Check.
func (o *Ours) NewFrame() []byte { return AllowedPacket(o.v6, NewSport).Frame() }

// EstablishedFrame is a packet of the open flow, for the live ingress
// program: same tuple and direction as the packet that opened it, so
// ct_check finds the flow's own entry (dir ingress, the generation in
// force) and answers CT_ALLOW without a policy lookup.
func (o *Ours) EstablishedFrame() []byte { return AllowedPacket(o.v6, EstablishedSport).Frame() }

// VerifyPaths shows that each frame takes the path it is measured for:
// with the peer's prefix removed from the policy in force, the established
// flow still passes the live program (so it is judged by connection
// tracking, not by the rules) while a new flow is dropped by Check (so
// Check does look the rules up, and the removal mattered). The prefix is
// put back before it returns.
func (o *Ours) VerifyPaths() error {
	for _, s := range []struct {
		prog  *ebpf.Program
		frame []byte
		what  string
	}{{o.Check, o.NewFrame(), "new flow (check program)"}, {o.Objs.PciIngress, o.EstablishedFrame(), "established flow"}} {
		if ret, err := Run(s.prog, s.frame); err != nil {
			return err
		} else if ret != bpf.RetNext {
			return fmt.Errorf("%s: returned %d, want TCX_NEXT", s.what, int32(ret))
		}
	}

	active, err := datapath.Writer(o.Objs.All()).Active()
	if err != nil {
		return err
	}
	var (
		m   = o.Objs.Addr4
		key any
		val bpf.DatapathAddrValue
		pp  = PeerPrefix(o.v6)
	)
	if o.v6 {
		m = o.Objs.Addr6
		key = &bpf.DatapathAddr6Key{Prefixlen: 32 + uint32(pp.Bits()), Half: uint8(active), Dir: bpf.DirIngress, Addr: pp.Addr().As16()}
	} else {
		key = &bpf.DatapathAddr4Key{Prefixlen: 32 + uint32(pp.Bits()), Half: uint8(active), Dir: bpf.DirIngress, Addr: pp.Addr().As4()}
	}
	if err := m.Lookup(key, &val); err != nil {
		return fmt.Errorf("the peer's prefix %s is not in the policy in force: %w", pp, err)
	}
	if err := m.Delete(key); err != nil {
		return fmt.Errorf("remove the peer's prefix: %w", err)
	}
	retNew, errNew := Run(o.Check, o.NewFrame())
	retEst, errEst := Run(o.Objs.PciIngress, o.EstablishedFrame())
	if err := m.Put(key, val); err != nil {
		return fmt.Errorf("put the peer's prefix back: %w", err)
	}
	switch {
	case errNew != nil || errEst != nil:
		return errors.Join(errNew, errEst)
	case retNew != bpf.RetDrop:
		return fmt.Errorf("without the peer's prefix a new flow got %d, want TCX_DROP: the check program does not read the rules", int32(retNew))
	case retEst != bpf.RetNext:
		return fmt.Errorf("without the peer's prefix the established flow got %d, want TCX_NEXT: it is not judged by connection tracking", int32(retEst))
	}
	return nil
}

// Close unloads everything.
func (o *Ours) Close() error {
	var errs []error
	if o.Check != nil {
		errs = append(errs, o.Check.Close())
	}
	return errors.Join(append(errs, o.Objs.Close())...)
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
