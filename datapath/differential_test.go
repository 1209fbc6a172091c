package datapath

// The differential test: generated policy sets, written as YAML, parsed,
// compiled and applied to the real datapath, and generated packets judged
// both by the twin (BPF_PROG_TEST_RUN) and by policy.Evaluate, the plain
// reading of the policies. Any disagreement prints the YAML and the packet.

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// Generated policies -------------------------------------------------------

type genPolicy struct {
	name, namespace string
	selector        map[string]string
	types           []string // nil: policyTypes omitted
	rules           [2]*[]genRule
}

type genRule struct {
	peers *[]genPeer // nil: no from/to key; empty: "[]"
	ports *[]genPort // nil: no ports key; empty: "[]"
}

type genPeer struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

type genPort struct {
	proto     string // "" leaves the protocol out (TCP)
	port, end int    // 0 leaves them out
}

// generator draws policy sets and packets from r. The address space is
// small on purpose: a few anchor addresses per family, with prefixes of
// many lengths around them, so cidrs and excepts nest and overlap.
type generator struct {
	r        *rand.Rand
	anchors4 []netip.Addr
	anchors6 []netip.Addr
	// Collected while generating, for packets near the boundaries.
	prefixes []netip.Prefix
	ports    []int
}

func newGenerator(r *rand.Rand) *generator {
	g := &generator{r: r}
	for range 1 + r.IntN(3) {
		g.anchors4 = append(g.anchors4, g.anchor4())
	}
	for range 1 + r.IntN(3) {
		g.anchors6 = append(g.anchors6, g.anchor6())
	}
	return g
}

func (g *generator) anchor4() netip.Addr {
	switch g.r.IntN(8) {
	case 0:
		return netip.AddrFrom4([4]byte{})
	case 1:
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], g.r.Uint32())
	return netip.AddrFrom4(a)
}

func (g *generator) anchor6() netip.Addr {
	switch g.r.IntN(8) {
	case 0: // IPv4-mapped
		return netip.AddrFrom16(g.anchor4().As16())
	case 1:
		if len(g.anchors4) > 0 { // the mapped twin of an IPv4 anchor
			return netip.AddrFrom16(g.anchors4[g.r.IntN(len(g.anchors4))].As16())
		}
	case 2:
		return netip.IPv6Unspecified()
	case 3:
		var a [16]byte
		for i := range a {
			a[i] = 0xff
		}
		return netip.AddrFrom16(a)
	}
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], g.r.Uint64())
	binary.BigEndian.PutUint64(a[8:], g.r.Uint64())
	return netip.AddrFrom16(a)
}

// bits picks a prefix length, favouring the edges.
func (g *generator) bits(max int) int {
	switch g.r.IntN(10) {
	case 0:
		return 0
	case 1:
		return max
	case 2:
		return max - 1
	case 3:
		return 1
	case 4:
		if max == 128 {
			return 96 + g.r.IntN(33) // around the IPv4-mapped block
		}
		return 24 + g.r.IntN(9)
	}
	return g.r.IntN(max + 1)
}

func (g *generator) prefix(v4 bool) netip.Prefix {
	var a netip.Addr
	if v4 {
		a = g.anchors4[g.r.IntN(len(g.anchors4))]
	} else {
		a = g.anchors6[g.r.IntN(len(g.anchors6))]
	}
	bits := g.bits(a.BitLen())
	if g.r.IntN(4) == 0 && bits > 0 {
		// A sibling: the anchor's prefix with its last bit flipped.
		b := a.AsSlice()
		i := bits - 1
		b[i/8] ^= 0x80 >> (i % 8)
		a, _ = netip.AddrFromSlice(b)
	}
	p := netip.PrefixFrom(a, bits).Masked()
	g.prefixes = append(g.prefixes, p)
	return p
}

// inside returns a random strict subset of p, or false when p is one address.
func (g *generator) inside(p netip.Prefix) (netip.Prefix, bool) {
	max := p.Addr().BitLen()
	if p.Bits() == max {
		return netip.Prefix{}, false
	}
	bits := p.Bits() + 1 + g.r.IntN(max-p.Bits())
	if g.r.IntN(3) == 0 {
		bits = p.Bits() + 1 + g.r.IntN(min(4, max-p.Bits()))
	}
	e := netip.PrefixFrom(g.randomIn(p), bits).Masked()
	g.prefixes = append(g.prefixes, e)
	return e, true
}

// randomIn is an address of p with random host bits.
func (g *generator) randomIn(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if g.r.IntN(2) == 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (g *generator) port() int {
	var p int
	switch g.r.IntN(8) {
	case 0:
		p = 1
	case 1:
		p = 65535
	case 2:
		p = 65535 - g.r.IntN(8)
	case 3:
		p = []int{22, 53, 80, 443, 3868, 32000, 32768}[g.r.IntN(7)]
	case 4:
		p = 1 + g.r.IntN(16)
	default:
		p = 1 + g.r.IntN(65535)
	}
	g.ports = append(g.ports, p)
	return p
}

func (g *generator) portEntry() genPort {
	var e genPort
	switch g.r.IntN(5) {
	case 0:
		e.proto = "" // TCP by default
	case 1:
		e.proto = "TCP"
	case 2:
		e.proto = "UDP"
	default:
		e.proto = "SCTP"
	}
	switch g.r.IntN(6) {
	case 0: // {} or {protocol: X}: every port of the protocol
	case 1, 2:
		e.port = g.port()
	default:
		e.port = g.port()
		switch g.r.IntN(4) {
		case 0:
			e.end = e.port
		case 1:
			e.end = 65535
		case 2:
			e.end = min(65535, e.port+g.r.IntN(40))
		default:
			e.end = e.port + g.r.IntN(65536-e.port)
		}
		g.ports = append(g.ports, e.end)
	}
	return e
}

func (g *generator) rule() genRule {
	var r genRule
	switch g.r.IntN(6) {
	case 0: // no from/to: every peer
	case 1:
		r.peers = &[]genPeer{}
	default:
		var peers []genPeer
		for range 1 + g.r.IntN(3) {
			p := genPeer{cidr: g.prefix(g.r.IntN(5) < 3)}
			for range g.r.IntN(4) {
				if e, ok := g.inside(p.cidr); ok {
					p.except = append(p.except, e)
				}
			}
			peers = append(peers, p)
		}
		r.peers = &peers
	}
	switch g.r.IntN(6) {
	case 0: // no ports: everything
	case 1:
		r.ports = &[]genPort{}
	default:
		var ports []genPort
		for range 1 + g.r.IntN(3) {
			ports = append(ports, g.portEntry())
		}
		r.ports = &ports
	}
	return r
}

var genSelectors = []map[string]string{
	nil, nil,
	{"pci-env": "cde"},
	{"tier": "db"},
	{"pci-env": "cde", "tier": "db"},
	{"tier": "web"},
	{"pci-env": "test"},
}

var genHostLabels = []map[string]string{
	{"pci-env": "cde", "tier": "db"},
	{"pci-env": "cde", "tier": "db"},
	{"tier": "web"},
	nil,
}

func (g *generator) policies() []genPolicy {
	var out []genPolicy
	for i := range 1 + g.r.IntN(4) {
		p := genPolicy{name: fmt.Sprintf("p%d", i), selector: genSelectors[g.r.IntN(len(genSelectors))]}
		if g.r.IntN(4) == 0 {
			p.namespace = "cde"
		}
		var keys [2]bool
		switch g.r.IntN(5) {
		case 0, 1: // omitted: each key present or not
			keys = [2]bool{g.r.IntN(4) > 0, g.r.IntN(2) == 0}
		case 2:
			p.types = []string{"Ingress"}
			keys[0] = g.r.IntN(5) > 0
		case 3:
			p.types = []string{"Egress"}
			keys[1] = g.r.IntN(5) > 0
		default:
			p.types = []string{"Ingress", "Egress"}
			if g.r.IntN(2) == 0 {
				p.types = []string{"Egress", "Ingress"}
			}
			keys = [2]bool{g.r.IntN(5) > 0, g.r.IntN(5) > 0}
		}
		for d, present := range keys {
			if !present {
				continue
			}
			rules := []genRule{}
			for range g.r.IntN(4) { // zero rules: "ingress: []"
				rules = append(rules, g.rule())
			}
			p.rules[d] = &rules
		}
		out = append(out, p)
	}
	return out
}

func yamlPolicies(pols []genPolicy) string {
	var b strings.Builder
	for i, p := range pols {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString("apiVersion: pci-segment/v1\nkind: NetworkPolicy\n")
		fmt.Fprintf(&b, "metadata: {name: %s", p.name)
		if p.namespace != "" {
			fmt.Fprintf(&b, ", namespace: %s", p.namespace)
		}
		b.WriteString("}\nspec:\n")
		if len(p.selector) == 0 {
			b.WriteString("  podSelector: {}\n")
		} else {
			var kv []string
			for k, v := range p.selector {
				kv = append(kv, k+": "+v)
			}
			slices.Sort(kv)
			fmt.Fprintf(&b, "  podSelector: {matchLabels: {%s}}\n", strings.Join(kv, ", "))
		}
		if p.types != nil {
			fmt.Fprintf(&b, "  policyTypes: [%s]\n", strings.Join(p.types, ", "))
		}
		for d, rules := range p.rules {
			if rules == nil {
				continue
			}
			key, peerKey := "ingress", "from"
			if d == 1 {
				key, peerKey = "egress", "to"
			}
			if len(*rules) == 0 {
				fmt.Fprintf(&b, "  %s: []\n", key)
				continue
			}
			fmt.Fprintf(&b, "  %s:\n", key)
			for _, r := range *rules {
				yamlRule(&b, r, peerKey)
			}
		}
	}
	return b.String()
}

func yamlRule(b *strings.Builder, r genRule, peerKey string) {
	if r.peers == nil && r.ports == nil {
		b.WriteString("    - {}\n")
		return
	}
	lead := "    - "
	if r.peers != nil {
		var peers []string
		for _, p := range *r.peers {
			s := fmt.Sprintf("{ipBlock: {cidr: %q", p.cidr.String())
			if len(p.except) > 0 {
				var ex []string
				for _, e := range p.except {
					ex = append(ex, fmt.Sprintf("%q", e.String()))
				}
				s += ", except: [" + strings.Join(ex, ", ") + "]"
			}
			peers = append(peers, s+"}}")
		}
		fmt.Fprintf(b, "%s%s: [%s]\n", lead, peerKey, strings.Join(peers, ", "))
		lead = "      "
	}
	if r.ports != nil {
		var ports []string
		for _, p := range *r.ports {
			var f []string
			if p.proto != "" {
				f = append(f, "protocol: "+p.proto)
			}
			if p.port != 0 {
				f = append(f, fmt.Sprintf("port: %d", p.port))
			}
			if p.end != 0 {
				f = append(f, fmt.Sprintf("endPort: %d", p.end))
			}
			ports = append(ports, "{"+strings.Join(f, ", ")+"}")
		}
		fmt.Fprintf(b, "%sports: [%s]\n", lead, strings.Join(ports, ", "))
	}
}

// Generated packets ---------------------------------------------------------

// Protocols without ports that the datapath reads as an upper layer in
// both families. IPv6 extension header numbers (0, 43, 44, 51, 60, 135,
// 139, 140, 253, 254) are not upper layers and are left out.
var genOtherProtos = []uint8{2, 4, 41, 47, 50, 59, 89, 103, 115, 255}

// peer picks an address near the set's boundaries, or anywhere.
func (g *generator) peer() netip.Addr {
	var a netip.Addr
	if len(g.prefixes) > 0 && g.r.IntN(5) > 0 {
		p := g.prefixes[g.r.IntN(len(g.prefixes))]
		switch g.r.IntN(6) {
		case 0:
			a = p.Addr()
		case 1:
			a = lastOf(p)
		case 2:
			a = p.Addr().Prev()
		case 3:
			a = lastOf(p).Next()
		default:
			a = g.randomIn(p)
		}
	} else if g.r.IntN(2) == 0 {
		a = g.randomIn(netip.PrefixFrom(g.anchors4[g.r.IntN(len(g.anchors4))], g.bits(32)).Masked())
	} else {
		a = g.randomIn(netip.PrefixFrom(g.anchors6[g.r.IntN(len(g.anchors6))], g.bits(128)).Masked())
	}
	if !a.IsValid() { // before 0.0.0.0 or after the last address
		a = g.anchors4[0]
	}
	if g.r.IntN(8) == 0 {
		// The same address in the other family's spelling: an IPv4
		// address as IPv4-mapped IPv6, or a mapped one unmapped.
		if a.Is4() {
			a = netip.AddrFrom16(a.As16())
		} else if a.Is4In6() {
			a = a.Unmap()
		}
	}
	return a
}

func (g *generator) packet() policy.Packet {
	p := policy.Packet{Direction: policy.Direction(g.r.IntN(2)), Peer: g.peer()}
	switch n := g.r.IntN(100); {
	case n < 32:
		p.Protocol = 6
	case n < 56:
		p.Protocol = 17
	case n < 72:
		p.Protocol = 132
	case n < 86:
		p.Protocol = 1
		if p.Peer.Is6() {
			p.Protocol = 58
		}
	case n < 90: // ICMP of the other family: just another protocol
		p.Protocol = 58
		if p.Peer.Is6() {
			p.Protocol = 1
		}
	default:
		p.Protocol = genOtherProtos[g.r.IntN(len(genOtherProtos))]
	}
	switch n := g.r.IntN(10); {
	case n < 6 && len(g.ports) > 0:
		p.Port = uint16(max(0, min(65535, g.ports[g.r.IntN(len(g.ports))]+g.r.IntN(3)-1)))
	case n == 6:
		p.Port = 0
	default:
		p.Port = uint16(g.r.IntN(65536))
	}
	p.Reply = g.r.IntN(4) == 0
	switch g.r.IntN(8) {
	case 0:
		p.Fragment = policy.FirstFragment
	case 1:
		p.Fragment = policy.LaterFragment
	}
	return p
}

var (
	diffHost4 = netip.MustParseAddr("192.0.2.1")
	diffHost6 = netip.MustParseAddr("2001:db8::1")
)

// wire builds the packet travelling in direction d between the host and
// peer, from sport to dport.
func wire(d policy.Direction, peer netip.Addr, proto uint8, sport, dport uint16) bpf.Packet {
	host := diffHost4
	if !peer.Is4() {
		host = diffHost6
	}
	p := bpf.Packet{Src: peer, Dst: host, Proto: proto, Sport: sport, Dport: dport}
	if d == policy.Egress {
		p.Src, p.Dst = host, peer
	}
	switch proto {
	case 1:
		p.ICMPType = 8 // echo request
	case 58:
		p.ICMPType = 128 // echo request
	}
	return p
}

// twinQuery is the question the twin, which keeps no state, can answer for
// p: a reply becomes the packet that opened its flow the other way, a later
// fragment becomes its first fragment.
func twinQuery(p policy.Packet, sport uint16, fragID uint32) (policy.Direction, bpf.Packet) {
	d := p.Direction
	if p.Reply {
		d ^= 1
	}
	q := wire(d, p.Peer, p.Protocol, sport, p.Port)
	if p.Fragment != policy.Unfragmented {
		q.Frag, q.FragID = bpf.FirstFrag, fragID
	}
	return d, q
}

// The runs -----------------------------------------------------------------

type diffEnv struct {
	objs  *bpf.DatapathObjects
	twin  *bpf.Twin
	gen   uint64
	stats diffStats
}

// diffStats shows that the cases cover what they should: a test where
// every packet is allowed, say, would agree vacuously.
type diffStats struct {
	cases, allowed, denied, notGoverned, replies, fragments, mapped, icmp, other int
}

func (s *diffStats) add(p policy.Packet, v policy.Verdict) {
	s.cases++
	switch {
	case !v.Governed:
		s.notGoverned++
	case v.Allowed:
		s.allowed++
	default:
		s.denied++
	}
	if p.Reply {
		s.replies++
	}
	if p.Fragment != policy.Unfragmented {
		s.fragments++
	}
	if p.Peer.Is4In6() {
		s.mapped++
	}
	switch p.Protocol {
	case 6, 17, 132:
	case 1, 58:
		s.icmp++
	default:
		s.other++
	}
}

func (s diffStats) String() string {
	return fmt.Sprintf("allowed by a rule %d, denied %d, direction not governed %d; "+
		"replies %d, fragments %d, IPv4-mapped peers %d, ICMP %d, other protocols %d",
		s.allowed, s.denied, s.notGoverned, s.replies, s.fragments, s.mapped, s.icmp, s.other)
}

func newDiffEnv(t testing.TB) *diffEnv {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	twin, err := bpf.LoadTwin(&objs.DatapathMaps)
	if err != nil {
		objs.Close()
		t.Fatal(err)
	}
	return &diffEnv{objs: objs, twin: twin}
}

func (e *diffEnv) close() {
	e.twin.Close()
	e.objs.Close()
}

// loadSet generates a policy set from g, parses and applies it, and returns
// it with its YAML and the host labels it was compiled for.
func (e *diffEnv) loadSet(t testing.TB, g *generator) (*policy.Set, map[string]string, string) {
	t.Helper()
	yaml := yamlPolicies(g.policies())
	labels := genHostLabels[g.r.IntN(len(genHostLabels))]
	pols, err := policy.Parse("generated.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("generated policy does not parse: %v\n%s", err, yaml)
	}
	slices.SortStableFunc(pols, func(a, b *policy.Policy) int { return strings.Compare(a.Key(), b.Key()) })
	set := &policy.Set{Policies: pols}
	c, err := policy.Compile(set, labels)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, yaml)
	}
	e.gen++
	if err := writerOf(e.objs).Apply(c, e.gen, set.Hash); err != nil {
		t.Fatalf("apply: %v\n%s", err, yaml)
	}
	return set, labels, yaml
}

// differential judges n packets of g against the applied set with the twin
// and the reference, and returns the disagreements, described.
func (e *diffEnv) differential(t testing.TB, g *generator, n int) []string {
	t.Helper()
	set, labels, yaml := e.loadSet(t, g)
	var bad []string
	for range n {
		p := g.packet()
		d, q := twinQuery(p, uint16(1024+g.r.IntN(64512)), g.r.Uint32())
		got, err := e.twin.Verdict(d == policy.Egress, q)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		want := policy.Evaluate(set, labels, p)
		e.stats.add(p, want)
		if got != want.Allowed {
			bad = append(bad, fmt.Sprintf("packet %s (twin asked: %s %s->%s proto %d %d->%d %v)\n"+
				"  twin allow=%v, reference: %s", p, d, q.Src, q.Dst, q.Proto, q.Sport, q.Dport, fragName(q.Frag), got, want))
		}
	}
	if len(bad) > 0 {
		bad = append([]string{fmt.Sprintf("host labels %q, policies:\n%s", policy.FormatLabels(labels), yaml)}, bad...)
	}
	return bad
}

func fragName(f bpf.Fragment) string {
	switch f {
	case bpf.FirstFrag:
		return "first fragment"
	case bpf.LaterFrag:
		return "later fragment"
	}
	return "unfragmented"
}

func reportDisagreements(t testing.TB, what string, bad []string) {
	t.Helper()
	if len(bad) == 0 {
		return
	}
	const show = 10
	msg := bad[0]
	for _, b := range bad[1:min(len(bad), show+1)] {
		msg += "\n" + b
	}
	if len(bad)-1 > show {
		msg += fmt.Sprintf("\n... and %d more", len(bad)-1-show)
	}
	t.Errorf("%s: %d disagreements between the datapath and policy.Evaluate\n%s", what, len(bad)-1, msg)
}

// TestDifferential: 110 generated policy sets, 1,000 packets each.
func TestDifferential(t *testing.T) {
	const sets, perSet = 110, 1000
	e := newDiffEnv(t)
	defer e.close()
	start := time.Now()
	for seed := range uint64(sets) {
		g := newGenerator(rand.New(rand.NewPCG(seed, 0x9c5e_9e6e_d1ff_0001)))
		reportDisagreements(t, fmt.Sprintf("seed %d", seed), e.differential(t, g, perSet))
		if t.Failed() {
			t.Fatalf("reproduce with the seed above (rand.NewPCG(seed, 0x9c5e_9e6e_d1ff_0001))")
		}
	}
	t.Logf("%d cases over %d policy sets, 0 disagreements, in %v", e.stats.cases, sets, time.Since(start).Round(time.Millisecond))
	t.Logf("cases: %s", e.stats)
	// Each kind of verdict must be common, or agreement proves little.
	for what, n := range map[string]int{"allowed": e.stats.allowed, "denied": e.stats.denied, "not governed": e.stats.notGoverned} {
		if n < e.stats.cases/20 {
			t.Errorf("only %d of %d cases %s: the generator no longer covers it", n, e.stats.cases, what)
		}
	}
}

// TestDifferentialStateful checks what the twin cannot: with the real
// programs and their state, a reply passes after its flow's opening packet
// exactly as policy.Evaluate says (or because the reply is allowed as a new
// packet of its own), and a later fragment follows its first fragment.
func TestDifferentialStateful(t *testing.T) {
	const sets, perSet = 20, 500
	e := newDiffEnv(t)
	defer e.close()
	var (
		ephemeral = uint16(1024) // unique per case: no case sees another's state
		fragID    = uint32(1)
		cases     int
	)
	run := func(d policy.Direction, p bpf.Packet) bool {
		prog := e.objs.PciIngress
		if d == policy.Egress {
			prog = e.objs.PciEgress
		}
		ret, err := prog.Run(&ebpf.RunOptions{Data: p.Frame()})
		if err != nil {
			t.Fatal(err)
		}
		return ret == bpf.RetNext
	}
	for seed := range uint64(sets) {
		g := newGenerator(rand.New(rand.NewPCG(seed, 0x5747_e0f0_0000_0002)))
		set, labels, yaml := e.loadSet(t, g)
		var bad []string
		check := func(step string, p policy.Packet, got, want bool) {
			if got != want {
				bad = append(bad, fmt.Sprintf("%s of %s: datapath allow=%v, want %v (reference: %s)",
					step, p, got, want, policy.Evaluate(set, labels, p)))
			}
		}
		for range perSet {
			p := g.packet()
			ephemeral++
			fragID++
			// Replies of other protocols are left out: the datapath tracks
			// only TCP, UDP and SCTP flows, so it judges an ICMP echo reply
			// as a new packet (dropped where no rule allows it), while
			// the reference passes every reply of an allowed opening.
			tracked := p.Protocol == 6 || p.Protocol == 17 || p.Protocol == 132
			switch {
			case p.Reply && tracked:
				// Open the flow the other way, then answer it.
				open := p
				open.Reply, open.Fragment = false, policy.Unfragmented
				open.Direction ^= 1
				opener := wire(open.Direction, p.Peer, p.Protocol, ephemeral, p.Port)
				check("opening packet", open, run(open.Direction, opener), policy.Evaluate(set, labels, open).Allowed)
				reply := bpf.Packet{Src: opener.Dst, Dst: opener.Src, Proto: p.Protocol, Sport: p.Port, Dport: ephemeral}
				asNew := policy.Packet{Direction: p.Direction, Peer: p.Peer, Protocol: p.Protocol, Port: ephemeral}
				want := policy.Evaluate(set, labels, p).Allowed || policy.Evaluate(set, labels, asNew).Allowed
				check("reply", p, run(p.Direction, reply), want)
				cases++
			case p.Fragment == policy.LaterFragment && !p.Reply:
				first := wire(p.Direction, p.Peer, p.Protocol, ephemeral, p.Port)
				first.Frag, first.FragID = bpf.FirstFrag, fragID
				fp := p
				fp.Fragment = policy.FirstFragment
				check("first fragment", fp, run(p.Direction, first), policy.Evaluate(set, labels, fp).Allowed)
				later := first
				later.Frag = bpf.LaterFrag
				check("later fragment", p, run(p.Direction, later), policy.Evaluate(set, labels, p).Allowed)
				cases++
			case !p.Reply:
				q := wire(p.Direction, p.Peer, p.Protocol, ephemeral, p.Port)
				if p.Fragment == policy.FirstFragment {
					q.Frag, q.FragID = bpf.FirstFrag, fragID
				}
				check("packet", p, run(p.Direction, q), policy.Evaluate(set, labels, p).Allowed)
				cases++
			}
		}
		if len(bad) > 0 {
			bad = append([]string{fmt.Sprintf("host labels %q, policies:\n%s", policy.FormatLabels(labels), yaml)}, bad...)
		}
		reportDisagreements(t, fmt.Sprintf("seed %d", seed), bad)
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d stateful cases, 0 disagreements", cases)
}

// byteSource drives the generator from fuzz input, then, once the input is
// used up, from a PCG stream seeded by it.
type byteSource struct {
	b   []byte
	pcg *rand.PCG
}

func newByteSource(b []byte) *byteSource {
	h := fnv.New64a()
	h.Write(b)
	return &byteSource{b: b, pcg: rand.NewPCG(h.Sum64(), uint64(len(b)))}
}

func (s *byteSource) Uint64() uint64 {
	if len(s.b) >= 8 {
		v := binary.LittleEndian.Uint64(s.b)
		s.b = s.b[8:]
		return v
	}
	if len(s.b) > 0 {
		var buf [8]byte
		copy(buf[:], s.b)
		s.b = nil
		return binary.LittleEndian.Uint64(buf[:])
	}
	return s.pcg.Uint64()
}

// The fuzz target loads the datapath once per process.
var fuzzEnv struct {
	once sync.Once
	env  *diffEnv
}

// FuzzDifferential runs the differential on policy sets and packets drawn
// from the fuzz input: go test -run '^$' -fuzz FuzzDifferential ./bpf/
func FuzzDifferential(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("pci-segment"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(binary.LittleEndian.AppendUint64(nil, 0x9c5e_9e6e_d1ff_0001))
	f.Fuzz(func(t *testing.T, data []byte) {
		testenv.RequireRoot(t)
		fuzzEnv.once.Do(func() { fuzzEnv.env = newDiffEnv(t) })
		if fuzzEnv.env == nil {
			t.Fatal("datapath failed to load in an earlier run")
		}
		g := newGenerator(rand.New(newByteSource(data)))
		reportDisagreements(t, "fuzz input", fuzzEnv.env.differential(t, g, 200))
	})
}

// TestDefaultSizesHold100kPrefixes applies two 100,000-prefix sets, one per
// half, to maps of the default sizes, and judges packets to the sets' own
// peers and ports with the twin and the reference: the defaults are what
// DefaultSizes says they hold, and a set that size is enforced as written.
func TestDefaultSizesHold100kPrefixes(t *testing.T) {
	e := newDiffEnv(t)
	defer e.close()
	g := newGenerator(rand.New(rand.NewPCG(7, 7)))
	for gen, seed := range []uint64{1, 2} {
		set := policy.Synthetic(100_000, seed, false)
		c, err := policy.Compile(set, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := writerOf(e.objs).Apply(c, uint64(gen+1), set.Hash); err != nil {
			t.Fatalf("set %d (%d address entries, %d port entries) on default-sized maps: %v", gen+1, len(c.Addrs), len(c.Ports), err)
		}
		var peers []netip.Prefix
		var ports []uint16
		spec := set.Policies[0].Spec
		for _, rules := range [][]policy.Rule{spec.Ingress, spec.Egress} {
			for _, r := range rules {
				for _, p := range r.Peers {
					peers = append(peers, p.CIDR)
				}
				for _, p := range r.Ports {
					ports = append(ports, p.Port)
				}
			}
		}
		var bad []string
		allowed := 0
		for range 2000 {
			p := policy.Packet{Direction: policy.Direction(g.r.IntN(2)), Peer: g.randomIn(peers[g.r.IntN(len(peers))]),
				Protocol: []uint8{6, 17}[g.r.IntN(2)], Port: ports[g.r.IntN(len(ports))]}
			d, q := twinQuery(p, 40000, 0)
			got, err := e.twin.Verdict(d == policy.Egress, q)
			if err != nil {
				t.Fatal(err)
			}
			want := policy.Evaluate(set, nil, p)
			if got != want.Allowed {
				bad = append(bad, fmt.Sprintf("packet %s: twin allow=%v, reference %s", p, got, want))
			}
			if want.Allowed {
				allowed++
			}
		}
		reportDisagreements(t, fmt.Sprintf("100,000-prefix set %d", gen+1), bad)
		if allowed < 100 || allowed > 1900 {
			t.Errorf("set %d: %d of 2000 packets allowed: the sample does not test both verdicts", gen+1, allowed)
		}
	}
}
