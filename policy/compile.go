package policy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"
	"slices"
)

// Compile reduces the policies of set that apply to a host with these
// labels to the entries the datapath looks up (see Compiled).
//
// Per direction and family it collects every cidr and except of the
// applying rules as a boundary prefix. Prefixes are nested or disjoint, so
// sorted by (address, length) they form a preorder walk of a binary trie:
// one pass with a stack gives, for each boundary P, the set of rules with
// some peer whose cidr contains P and none of whose excepts does — exactly
// the rules that match any address whose longest matching boundary is P.
//
// A class is not that set of rules but what it grants: the normalized set
// of (direction, protocol, port block, policy) allowances of its rules.
// Sets of rules that grant the same allowances share a class, so 100,000
// host rules that all allow TCP 443 need one port entry, not 100,000. A
// boundary's class is emitted only where it differs from the enclosing
// boundary's, so longest-prefix match over Addrs yields it.
//
// The cost is a sort and a linear walk, O(n log n) in the number of
// prefixes, plus, per distinct set of rules met, work in proportion to its
// allowances. 100,000 mostly disjoint prefixes compile in about 0.15 s
// (BenchmarkCompile100k); heavily overlapping rules with distinct ports
// produce many more classes and port entries, and take longer.
func Compile(set *Set, hostLabels map[string]string) (*Compiled, error) {
	if set == nil {
		return nil, errors.New("compile: no policy set")
	}
	c := &Compiled{}
	var rules []compRule
	for _, p := range set.Applying(hostLabels) {
		pi := uint32(len(c.Policies))
		c.Policies = append(c.Policies, p.Key())
		c.Rules += len(p.Spec.Ingress) + len(p.Spec.Egress)
		for _, d := range directions {
			if !p.Governs(d) {
				continue
			}
			c.Governed[d] = true
			rs := p.Rules(d)
			for i := range rs {
				rules = append(rules, compRule{
					dir: d, policy: pi, rule: &rs[i], ports: portEntries(rs[i].Ports),
				})
			}
		}
	}
	k := newClasser(c, rules)
	for _, d := range directions {
		if !c.Governed[d] {
			continue // not filtered: the datapath needs no entries
		}
		k.walk(d, true)
		k.walk(d, false)
	}
	// Both lists come out sorted without a final sort: Addrs by direction,
	// family, address and length (the walks' order), Ports by direction,
	// class, protocol, port, bits (classes are numbered as the walks meet
	// them, ingress first, and a class never spans directions).
	return c, nil
}

type compRule struct {
	dir    Direction
	policy uint32
	rule   *Rule
	ports  []PortEntry // Dir, Class and Policy filled in per class
}

// portEntries is what one rule allows, as port prefixes.
func portEntries(ports []Port) []PortEntry {
	if len(ports) == 0 {
		return []PortEntry{{Proto: 0}}
	}
	var out []PortEntry
	for _, p := range ports {
		if p.Port == 0 {
			out = append(out, PortEntry{Proto: uint8(p.Protocol)})
			continue
		}
		end := max(p.EndPort, p.Port)
		for _, b := range portBlocks(p.Port, end) {
			b.Proto = uint8(p.Protocol)
			out = append(out, b)
		}
	}
	return out
}

// portBlocks cuts lo..hi into the fewest aligned power-of-two blocks: at
// each step the largest block that starts at lo (its alignment) and does
// not pass hi.
func portBlocks(lo, hi uint16) []PortEntry {
	var out []PortEntry
	for l := uint32(lo); l <= uint32(hi); {
		size := uint32(1) << 16
		if l != 0 {
			size = l & -l
		}
		for l+size-1 > uint32(hi) {
			size >>= 1
		}
		out = append(out, PortEntry{Port: uint16(l), Bits: uint8(16 - bits.TrailingZeros32(size))})
		l += size
	}
	return out
}

// normalizePorts appends to out the port entries of one class, sorted and
// without any entry another one covers: an "any protocol" entry covers all,
// an "any port" entry its protocol, and aligned blocks are nested or
// disjoint, so after sorting an entry is covered exactly when the last kept
// one covers it. Of equal entries the one from the lowest policy index is
// kept. Entries are sorted as packed integers (keys is scratch space): this
// runs once per class and dominates Compile when rules overlap a lot.
func normalizePorts(out []PortEntry, keys []uint64, d Direction, class uint32) []PortEntry {
	slices.Sort(keys)
	start := len(out)
	for _, k := range keys {
		e := PortEntry{
			Dir: d, Class: class,
			Proto: uint8(k >> 56), Port: uint16(k >> 40), Bits: uint8(k >> 32), Policy: uint32(k),
		}
		if len(out) > start && portCovers(out[len(out)-1], e) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// portKey packs what normalizePorts sorts by: protocol, port, bits, policy.
func portKey(e PortEntry, policy uint32) uint64 {
	return uint64(e.Proto)<<56 | uint64(e.Port)<<40 | uint64(e.Bits)<<32 | uint64(policy)
}

func portCovers(a, e PortEntry) bool {
	if a.Proto == 0 {
		return true
	}
	if a.Proto != e.Proto || a.Bits > e.Bits {
		return false
	}
	shift := 16 - uint32(a.Bits)
	return uint32(a.Port)>>shift == uint32(e.Port)>>shift
}

// classKey is a fingerprint of a set of rules: two independent 64-bit
// Zobrist hashes (XOR of per-rule values, so adding or removing a rule is
// O(1)) and the set's size. It only speeds up the lookup; a class found by
// it is confirmed member by member, so two sets never share a class even
// if someone crafts a collision.
type classKey struct {
	h1, h2 uint64
	n      int
}

// ruleHash gives a rule's two Zobrist values. A variable so a test can make
// every fingerprint collide and check that classes stay exact.
var ruleHash = func(r int32) (uint64, uint64) {
	return splitmix64(uint64(r) << 1), splitmix64(uint64(r)<<1 | 1)
}

// allowanceHash fingerprints a class's normalized allowances. A variable
// so a test can make every fingerprint collide: classes found by it are
// confirmed entry by entry.
var allowanceHash = func(es []PortEntry) uint64 {
	h := uint64(len(es))
	for _, e := range es {
		h = splitmix64(h ^ portKey(e, e.Policy) ^ uint64(e.Dir)<<48)
	}
	return h
}

// classer keeps the set of rules matching the current trie node while the
// walk descends and climbs. It numbers the distinct sets of rules it meets
// (set ids, internal) and maps each to the class of its allowances (the
// ids in Compiled).
type classer struct {
	c      *Compiled
	rules  []compRule
	count  []int32 // matching peers per rule; a rule matches when > 0
	pos    []int32 // index in active, or -1
	active []int32
	key    classKey
	ids    map[classKey]uint32
	more   map[classKey][]uint32 // further sets whose fingerprint collided
	// members[off[id-1]:off[id]] are the rules of set id; class[id] is
	// its class.
	members []int32
	off     []int
	class   []uint32
	// c.Ports[portOff[cl-1]:portOff[cl]] are the allowances of class cl;
	// byAllowance finds a class by allowanceHash of them, moreAllowance
	// further classes whose hash collided.
	portOff       []int
	byAllowance   map[uint64]uint32
	moreAllowance map[uint64][]uint32
	keys          []uint64 // scratch for normalizePorts
}

func newClasser(c *Compiled, rules []compRule) *classer {
	k := &classer{
		c: c, rules: rules,
		count: make([]int32, len(rules)),
		pos:   make([]int32, len(rules)),
		ids:   make(map[classKey]uint32),
		more:  make(map[classKey][]uint32),
		off:   []int{0},
		class: []uint32{0},

		portOff:       []int{0},
		byAllowance:   make(map[uint64]uint32),
		moreAllowance: make(map[uint64][]uint32),
	}
	for i := range k.pos {
		k.pos[i] = -1
	}
	return k
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (k *classer) toggle(r int32) {
	h1, h2 := ruleHash(r)
	k.key.h1 ^= h1
	k.key.h2 ^= h2
}

func (k *classer) apply(r, delta int32) {
	old := k.count[r]
	k.count[r] += delta
	switch now := k.count[r]; {
	case old <= 0 && now > 0:
		k.pos[r] = int32(len(k.active))
		k.active = append(k.active, r)
		k.toggle(r)
		k.key.n++
	case old > 0 && now <= 0:
		i, last := k.pos[r], k.active[len(k.active)-1]
		k.active[i] = last
		k.pos[last] = i
		k.active = k.active[:len(k.active)-1]
		k.pos[r] = -1
		k.toggle(r)
		k.key.n--
	}
}

// is reports whether set id is the current set of rules: same size and
// every member currently matching.
func (k *classer) is(id uint32) bool {
	m := k.members[k.off[id-1]:k.off[id]]
	if len(m) != len(k.active) {
		return false
	}
	for _, r := range m {
		if k.count[r] <= 0 {
			return false
		}
	}
	return true
}

// classOf returns the class of the current set of rules, working it out on
// the set's first sight. The empty set is class 0.
func (k *classer) classOf(d Direction) uint32 {
	if k.key.n == 0 {
		return 0
	}
	first, found := k.ids[k.key]
	if found && k.is(first) {
		return k.class[first]
	}
	for _, id := range k.more[k.key] {
		if k.is(id) {
			return k.class[id]
		}
	}
	id := uint32(len(k.off))
	if found {
		k.more[k.key] = append(k.more[k.key], id)
	} else {
		k.ids[k.key] = id
	}
	k.members = append(k.members, k.active...)
	k.off = append(k.off, len(k.members))
	cl := k.allowanceClass(d)
	k.class = append(k.class, cl)
	return cl
}

// allowanceClass returns the class granting what the current set of rules
// grants, creating it, with its port entries, if no earlier set granted
// exactly that. The entries are normalized in place at the end of Ports and
// taken back when an existing class grants the same.
func (k *classer) allowanceClass(d Direction) uint32 {
	k.keys = k.keys[:0]
	for _, r := range k.active {
		for _, e := range k.rules[r].ports {
			k.keys = append(k.keys, portKey(e, k.rules[r].policy))
		}
	}
	if p := k.c.Ports; cap(p)-len(p) < len(k.keys) {
		// Double rather than let append grow a large slice by a quarter
		// at a time, copying it over and over.
		k.c.Ports = slices.Grow(p, max(len(k.keys), len(p)))
	}
	start := len(k.c.Ports)
	cl := uint32(len(k.portOff))
	k.c.Ports = normalizePorts(k.c.Ports, k.keys, d, cl)
	added := k.c.Ports[start:]
	h := allowanceHash(added)
	first, found := k.byAllowance[h]
	if found && k.grants(first, added) {
		k.c.Ports = k.c.Ports[:start]
		return first
	}
	if found {
		for _, other := range k.moreAllowance[h] {
			if k.grants(other, added) {
				k.c.Ports = k.c.Ports[:start]
				return other
			}
		}
		k.moreAllowance[h] = append(k.moreAllowance[h], cl)
	} else {
		k.byAllowance[h] = cl
	}
	k.portOff = append(k.portOff, len(k.c.Ports))
	return cl
}

// grants reports whether class cl has exactly the entries es, but for
// their class.
func (k *classer) grants(cl uint32, es []PortEntry) bool {
	return slices.EqualFunc(k.c.Ports[k.portOff[cl-1]:k.portOff[cl]], es, sameAllowance)
}

// sameAllowance compares two port entries but for their class.
func sameAllowance(a, b PortEntry) bool {
	a.Class = b.Class
	return a == b
}

// prefix is a netip.Prefix as two integers: no pointer for the garbage
// collector to scan and cheap to compare, which matters when the walk sorts
// a few hundred thousand of them. An IPv4 address sits in the top 32 bits.
type prefix struct {
	hi, lo uint64
	bits   uint8
}

func toPrefix(p netip.Prefix) prefix {
	if p.Addr().Is4() {
		a := p.Addr().As4()
		return prefix{hi: uint64(binary.BigEndian.Uint32(a[:])) << 32, bits: uint8(p.Bits())}
	}
	a := p.Addr().As16() // an IPv4-mapped address stays in IPv6 form
	return prefix{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:]), uint8(p.Bits())}
}

func (p prefix) netip(v4 bool) netip.Prefix {
	if v4 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(p.hi>>32))
		return netip.PrefixFrom(netip.AddrFrom4(a), int(p.bits))
	}
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], p.hi)
	binary.BigEndian.PutUint64(a[8:], p.lo)
	return netip.PrefixFrom(netip.AddrFrom16(a), int(p.bits))
}

func (p prefix) compare(q prefix) int {
	return cmp.Or(cmp.Compare(p.hi, q.hi), cmp.Compare(p.lo, q.lo), cmp.Compare(p.bits, q.bits))
}

// contains reports whether q lies inside p. Both are masked.
func (p prefix) contains(q prefix) bool {
	if p.bits > q.bits {
		return false
	}
	switch {
	case p.bits == 0:
		return true
	case p.bits <= 64:
		return (p.hi^q.hi)>>(64-p.bits) == 0
	}
	return p.hi == q.hi && (p.lo^q.lo)>>(128-p.bits) == 0
}

type event struct {
	pfx   prefix
	rule  int32
	delta int32
}

type ruleDelta struct{ rule, delta int32 }

type boundary struct {
	pfx        prefix
	start, end int // deltas[start:end]
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func containsPrefix(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// walk emits the AddrEntries of direction d and one family.
func (k *classer) walk(d Direction, v4 bool) {
	var all prefix // 0.0.0.0/0 and ::/0 alike
	n := 0
	for i := range k.rules {
		if r := &k.rules[i]; r.dir == d {
			n++
			for _, p := range r.rule.Peers {
				n += 1 + len(p.Except)
			}
		}
	}
	evs := make([]event, 0, n)
	for i := range k.rules {
		r := &k.rules[i]
		if r.dir != d {
			continue
		}
		if len(r.rule.Peers) == 0 {
			evs = append(evs, event{all, int32(i), 1})
			continue
		}
		for _, p := range r.rule.Peers {
			if p.CIDR.Addr().Is4() != v4 {
				continue
			}
			evs = append(evs, event{toPrefix(p.CIDR), int32(i), 1})
			for _, e := range outermost(p.Except) {
				evs = append(evs, event{toPrefix(e), int32(i), -1})
			}
		}
	}
	if len(evs) == 0 {
		return
	}
	slices.SortFunc(evs, func(a, b event) int {
		return cmp.Or(a.pfx.compare(b.pfx), cmp.Compare(a.rule, b.rule))
	})

	// Group events by prefix and sum them per rule: a rule whose peer is
	// excepted at P while another of its peers starts at P is unchanged.
	bs := make([]boundary, 0, len(evs))
	deltas := make([]ruleDelta, 0, len(evs))
	for i := 0; i < len(evs); {
		b := boundary{pfx: evs[i].pfx, start: len(deltas)}
		for i < len(evs) && evs[i].pfx == b.pfx {
			rd := ruleDelta{evs[i].rule, 0}
			for i < len(evs) && evs[i].pfx == b.pfx && evs[i].rule == rd.rule {
				rd.delta += evs[i].delta
				i++
			}
			if rd.delta != 0 {
				deltas = append(deltas, rd)
			}
		}
		b.end = len(deltas)
		if b.end > b.start {
			bs = append(bs, b)
		}
	}

	// Sorted by (address, length), nested-or-disjoint prefixes come in
	// preorder: a stack holds the chain of boundaries enclosing the current
	// one, and leaving a boundary undoes its deltas.
	type frame struct {
		b     int
		class uint32
	}
	var stack []frame
	undo := func(f frame) {
		for _, rd := range deltas[bs[f.b].start:bs[f.b].end] {
			k.apply(rd.rule, -rd.delta)
		}
	}
	k.c.Addrs = slices.Grow(k.c.Addrs, len(bs))
	for bi, b := range bs {
		for len(stack) > 0 && !bs[stack[len(stack)-1].b].pfx.contains(b.pfx) {
			undo(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
		}
		for _, rd := range deltas[b.start:b.end] {
			k.apply(rd.rule, rd.delta)
		}
		parent := uint32(0)
		if len(stack) > 0 {
			parent = stack[len(stack)-1].class
		}
		class := k.classOf(d)
		if class != parent {
			k.c.Addrs = append(k.c.Addrs, AddrEntry{Dir: d, Prefix: b.pfx.netip(v4), Class: class})
		}
		stack = append(stack, frame{bi, class})
	}
	for len(stack) > 0 {
		undo(stack[len(stack)-1])
		stack = stack[:len(stack)-1]
	}
}

// outermost drops excepts that repeat or sit inside another except of the
// same peer: counting them would take the peer away twice.
func outermost(ex []netip.Prefix) []netip.Prefix {
	if len(ex) < 2 {
		return ex
	}
	s := slices.Clone(ex)
	slices.SortFunc(s, comparePrefix)
	out := s[:0]
	for _, e := range s {
		if len(out) > 0 && containsPrefix(out[len(out)-1], e) {
			continue
		}
		out = append(out, e)
	}
	return out
}
