package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// lookup is the datapath's decision read off a Compiled by brute force:
// the longest prefix in Addrs containing the peer, then any PortEntry of
// its class covering protocol and port. It returns the granting entry.
func lookup(c *Compiled, d Direction, peer netip.Addr, proto uint8, port uint16) (bool, *PortEntry) {
	if !c.Governed[d] {
		return true, nil
	}
	best := -1
	for i, e := range c.Addrs {
		if e.Dir == d && e.Prefix.Contains(peer) && (best < 0 || e.Prefix.Bits() > c.Addrs[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 || c.Addrs[best].Class == 0 {
		return false, nil
	}
	class := c.Addrs[best].Class
	for i, p := range c.Ports {
		if p.Dir != d || p.Class != class {
			continue
		}
		shift := 16 - uint32(p.Bits)
		if p.Proto == 0 || (p.Proto == proto && uint32(port)>>shift == uint32(p.Port)>>shift) {
			return true, &c.Ports[i]
		}
	}
	return false, nil
}

type packet struct {
	dir   Direction
	peer  string
	proto uint8
	port  uint16
	allow bool
}

func (p packet) String() string {
	return fmt.Sprintf("%s %s proto %d port %d", p.dir, p.peer, p.proto, p.port)
}

const (
	icmp   = 1
	tcp    = 6
	udp    = 17
	sctp   = 132
	icmpv6 = 58
)

// checkPacket compares the compiled lookup with the reference evaluator
// (and, when given, with the expected verdict), and checks that the entry
// granting an allowed packet names a policy that really allows it.
func checkPacket(t *testing.T, set *Set, labels map[string]string, c *Compiled, d Direction, peer netip.Addr, proto uint8, port uint16, want *bool) {
	t.Helper()
	got, entry := lookup(c, d, peer, proto, port)
	ref := set.Evaluate(labels, d, peer, proto, port)
	desc := fmt.Sprintf("%s %s proto %d port %d", d, peer, proto, port)
	if got != ref.Allowed {
		t.Errorf("%s: compiled says %v, reference says %v (%s)", desc, got, ref.Allowed, ref)
		return
	}
	if want != nil && got != *want {
		t.Errorf("%s: allowed %v, want %v (%s)", desc, got, *want, ref)
	}
	if entry == nil {
		return
	}
	key := c.Policies[entry.Policy]
	for _, p := range set.Policies {
		if p.Key() != key {
			continue
		}
		for _, r := range p.Rules(d) {
			if r.matchesPeer(peer) && r.matchesPort(proto, port) {
				return
			}
		}
	}
	t.Errorf("%s: allowed by an entry naming policy %s, which has no rule allowing it", desc, key)
}

func loadDocs(t *testing.T, docs ...string) *Set {
	t.Helper()
	dir := writeFiles(t, map[string]string{"p.yaml": strings.Join(docs, "---\n")})
	set, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestCompileAgreesWithTheRules(t *testing.T) {
	tests := []struct {
		name    string
		docs    []string
		labels  string
		packets []packet
	}{
		{
			name: "an except hides an address from its own peer only",
			docs: []string{header + `  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.5/32]}}]
    ports: [{protocol: TCP, port: 80}]
  - from: [{ipBlock: {cidr: 10.0.1.0/24}}]
    ports: [{protocol: TCP, port: 443}]
`},
			packets: []packet{
				{Ingress, "10.0.1.5", tcp, 443, true},
				{Ingress, "10.0.1.5", tcp, 80, false},
				{Ingress, "10.0.2.9", tcp, 80, true},
				{Ingress, "10.0.2.9", tcp, 443, false},
				{Ingress, "10.0.1.6", tcp, 80, true},
				{Ingress, "10.0.1.6", tcp, 443, true},
				{Ingress, "10.0.1.5", udp, 443, false},
				{Ingress, "11.0.0.1", tcp, 80, false},
				{Egress, "11.0.0.1", tcp, 80, true}, // egress is not governed
			},
		},
		{
			name: "a rule without ports allows every protocol and port",
			docs: []string{header + `  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
  - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
    ports: [{protocol: TCP, port: 443}]
`},
			packets: []packet{
				{Egress, "10.0.9.9", tcp, 22, true},
				{Egress, "10.0.9.9", udp, 5000, true},
				{Egress, "10.0.9.9", icmp, 0, true},
				{Egress, "10.1.0.1", tcp, 443, false},
				{Ingress, "10.1.0.1", tcp, 443, true},
			},
		},
		{
			name: "0.0.0.0/0 admits no IPv6 address, not even IPv4-mapped",
			docs: []string{header + `  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}]}]
`},
			packets: []packet{
				{Egress, "192.0.2.1", tcp, 443, true},
				{Egress, "0.0.0.0", udp, 1, true},
				{Egress, "255.255.255.255", sctp, 65535, true},
				{Egress, "2001:db8::1", tcp, 443, false},
				{Egress, "::ffff:192.0.2.1", tcp, 443, false},
				{Egress, "::", tcp, 443, false},
				{Egress, "::1", icmpv6, 0, false},
			},
		},
		{
			name: "an empty ingress list denies all ingress and leaves egress alone",
			docs: []string{header + "  policyTypes: [Ingress]\n  ingress: []\n"},
			packets: []packet{
				{Ingress, "10.0.0.1", tcp, 80, false},
				{Ingress, "2001:db8::1", udp, 53, false},
				{Ingress, "127.0.0.1", icmp, 0, false},
				{Egress, "10.0.0.1", tcp, 80, true},
				{Egress, "2001:db8::1", udp, 53, true},
			},
		},
		{
			name: "an empty rule allows every peer and port",
			docs: []string{header + "  policyTypes: [Ingress]\n  ingress: [{}]\n"},
			packets: []packet{
				{Ingress, "10.0.0.1", tcp, 80, true},
				{Ingress, "2001:db8::1", udp, 53, true},
				{Ingress, "::ffff:10.0.0.1", sctp, 9, true},
				{Ingress, "127.0.0.1", icmp, 0, true},
			},
		},
		{
			name: "an except in one policy does not hide another policy's peer",
			docs: []string{
				named("a") + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]\n",
				named("b") + "  ingress: [{from: [{ipBlock: {cidr: 10.1.2.0/24}}]}]\n",
			},
			packets: []packet{
				{Ingress, "10.1.2.3", tcp, 1, true},
				{Ingress, "10.1.3.3", tcp, 1, false},
				{Ingress, "10.2.0.0", tcp, 1, true},
			},
		},
		{
			name: "nested excepts of one peer, and a peer re-adding an excepted range",
			docs: []string{header + `  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.1.2.0/24, 10.1.0.0/16]}
    - ipBlock: {cidr: 10.1.2.0/25}
`},
			packets: []packet{
				{Ingress, "10.1.2.3", tcp, 1, true},
				{Ingress, "10.1.2.200", tcp, 1, false},
				{Ingress, "10.1.3.3", tcp, 1, false},
				{Ingress, "10.9.0.0", tcp, 1, true},
			},
		},
		{
			name: "an IPv4-mapped prefix admits only IPv6 packets",
			docs: []string{header + "  ingress: [{from: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]}]\n"},
			packets: []packet{
				{Ingress, "::ffff:10.0.0.1", tcp, 1, true},
				{Ingress, "10.0.0.1", tcp, 1, false},
			},
		},
		{
			name: "only policies selecting the host count",
			docs: []string{
				strings.Replace(named("db"), "podSelector: {}", "podSelector: {matchLabels: {tier: db}}", 1) +
					"  ingress: [{ports: [{port: 5432}]}]\n  egress: []\n",
				strings.Replace(named("web"), "podSelector: {}", "podSelector: {matchLabels: {role: web}}", 1) +
					"  ingress: [{ports: [{port: 443}]}]\n",
			},
			labels: "role=web,pci-env=cde",
			packets: []packet{
				{Ingress, "192.0.2.1", tcp, 443, true},
				{Ingress, "192.0.2.1", tcp, 5432, false},
				{Egress, "192.0.2.1", tcp, 5432, true},
			},
		},
		{
			name: "port ranges and protocols",
			docs: []string{header + `  ingress:
  - ports:
    - {protocol: UDP, port: 1000, endPort: 2000}
    - {protocol: SCTP}
    - {port: 65535}
`},
			packets: []packet{
				{Ingress, "192.0.2.1", udp, 999, false},
				{Ingress, "192.0.2.1", udp, 1000, true},
				{Ingress, "192.0.2.1", udp, 1536, true},
				{Ingress, "192.0.2.1", udp, 2000, true},
				{Ingress, "192.0.2.1", udp, 2001, false},
				{Ingress, "192.0.2.1", tcp, 1500, false},
				{Ingress, "192.0.2.1", sctp, 7, true},
				{Ingress, "2001:db8::7", sctp, 0, true},
				{Ingress, "192.0.2.1", tcp, 65535, true},
				{Ingress, "192.0.2.1", tcp, 65534, false},
				{Ingress, "192.0.2.1", icmp, 0, false},
			},
		},
		{
			name: "a policy without rules adds nothing to another's allowances",
			docs: []string{
				named("deny") + "  policyTypes: [Ingress, Egress]\n",
				named("allow") + "  ingress: [{from: [{ipBlock: {cidr: \"2001:db8::/32\"}}]}]\n",
			},
			packets: []packet{
				{Ingress, "2001:db8::1", tcp, 22, true},
				{Ingress, "2001:db9::1", tcp, 22, false},
				{Egress, "2001:db8::1", tcp, 22, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := loadDocs(t, tt.docs...)
			labels, err := ParseLabels(tt.labels)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Compile(set, labels)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, set, labels, c)
			for _, p := range tt.packets {
				checkPacket(t, set, labels, c, p.dir, netip.MustParseAddr(p.peer), p.proto, p.port, &p.allow)
			}
		})
	}
}

func TestCompileOutput(t *testing.T) {
	pfx := netip.MustParsePrefix
	tests := []struct {
		name string
		doc  string
		want *Compiled
	}{
		{
			name: "empty ingress list: governed, nothing allowed",
			doc:  header + "  policyTypes: [Ingress]\n  ingress: []\n",
			want: &Compiled{Governed: [2]bool{true, false}, Policies: []string{"p"}},
		},
		{
			name: "empty rule: both families, every protocol",
			doc:  header + "  ingress: [{}]\n",
			want: &Compiled{
				Governed: [2]bool{true, false},
				Addrs:    []AddrEntry{{Ingress, pfx("0.0.0.0/0"), 1}, {Ingress, pfx("::/0"), 1}},
				Ports:    []PortEntry{{Dir: Ingress, Class: 1}},
				Policies: []string{"p"}, Rules: 1,
			},
		},
		{
			name: "every port of a class collapses to one any-protocol entry",
			doc: header + `  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
  - to: [{ipBlock: {cidr: 10.0.0.0/16}}]
    ports: [{protocol: TCP, port: 443}]
`,
			want: &Compiled{
				Governed: [2]bool{false, true},
				Addrs:    []AddrEntry{{Egress, pfx("10.0.0.0/16"), 1}},
				Ports:    []PortEntry{{Dir: Egress, Class: 1}},
				Policies: []string{"p"}, Rules: 2,
			},
		},
		{
			name: "rules granting the same allowances share a class; a nested one adds no entry",
			doc: header + `  ingress:
  - from: [{ipBlock: {cidr: 10.0.0.0/8}}]
    ports: [{port: 443}]
  - from: [{ipBlock: {cidr: 10.1.0.0/16}}]
    ports: [{port: 443}]
  - from: [{ipBlock: {cidr: 192.168.0.0/16}}]
    ports: [{port: 443}]
  - from: [{ipBlock: {cidr: 172.16.0.0/12}}]
    ports: [{port: 22}]
`,
			want: &Compiled{
				Governed: [2]bool{true, false},
				Addrs: []AddrEntry{
					{Ingress, pfx("10.0.0.0/8"), 1},
					{Ingress, pfx("172.16.0.0/12"), 2},
					{Ingress, pfx("192.168.0.0/16"), 1},
				},
				Ports: []PortEntry{
					{Dir: Ingress, Class: 1, Proto: tcp, Port: 443, Bits: 16},
					{Dir: Ingress, Class: 2, Proto: tcp, Port: 22, Bits: 16},
				},
				Policies: []string{"p"}, Rules: 4,
			},
		},
		{
			name: "except: class 0 only where it hides a shorter prefix, same set same class",
			doc: header + `  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}
    - ipBlock: {cidr: 192.168.0.0/16}
    ports: [{port: 80}, {port: 80}, {port: 8080, endPort: 8090}, {protocol: UDP}]
`,
			want: &Compiled{
				Governed: [2]bool{true, false},
				Addrs: []AddrEntry{
					{Ingress, pfx("10.0.0.0/8"), 1},
					{Ingress, pfx("10.0.1.0/24"), 0},
					{Ingress, pfx("192.168.0.0/16"), 1},
				},
				Ports: []PortEntry{
					{Dir: Ingress, Class: 1, Proto: tcp, Port: 80, Bits: 16},
					{Dir: Ingress, Class: 1, Proto: tcp, Port: 8080, Bits: 13},
					{Dir: Ingress, Class: 1, Proto: tcp, Port: 8088, Bits: 15},
					{Dir: Ingress, Class: 1, Proto: tcp, Port: 8090, Bits: 16},
					{Dir: Ingress, Class: 1, Proto: udp},
				},
				Policies: []string{"p"}, Rules: 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := loadDocs(t, tt.doc)
			c, err := Compile(set, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("got  %+v\nwant %+v", c, tt.want)
			}
		})
	}
	if _, err := Compile(nil, nil); err == nil {
		t.Error("compiling no set must fail")
	}
}

func TestPortBlocks(t *testing.T) {
	tests := []struct {
		lo, hi uint16
		want   string
	}{
		{80, 80, "80/16"},
		{1024, 2047, "1024/6"},
		{8080, 8090, "8080/13 8088/15 8090/16"},
		{65535, 65535, "65535/16"},
		{32768, 65535, "32768/1"},
		{1, 65535, "1/16 2/15 4/14 8/13 16/12 32/11 64/10 128/9 256/8 512/7 1024/6 2048/5 4096/4 8192/3 16384/2 32768/1"},
	}
	for _, tt := range tests {
		var got []string
		for _, b := range portBlocks(tt.lo, tt.hi) {
			got = append(got, fmt.Sprintf("%d/%d", b.Port, b.Bits))
		}
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("%d-%d: got %s, want %s", tt.lo, tt.hi, s, tt.want)
		}
	}
	// Every range: blocks aligned, contiguous, exactly covering lo..hi, and
	// minimal (no two neighbours are the halves of one aligned block).
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		lo := uint16(1 + rng.IntN(65535))
		hi := lo + uint16(rng.IntN(65536-int(lo)))
		next := uint32(lo)
		bs := portBlocks(lo, hi)
		for i, b := range bs {
			size := uint32(1) << (16 - b.Bits)
			if uint32(b.Port) != next || uint32(b.Port)%size != 0 {
				t.Fatalf("%d-%d: block %d/%d misplaced", lo, hi, b.Port, b.Bits)
			}
			if i > 0 && bs[i-1].Bits == b.Bits && uint32(bs[i-1].Port)%(2*size) == 0 {
				t.Fatalf("%d-%d: blocks %d and %d could be one", lo, hi, bs[i-1].Port, b.Port)
			}
			next += size
		}
		if next != uint32(hi)+1 {
			t.Fatalf("%d-%d: blocks end at %d", lo, hi, next-1)
		}
	}
}

// checkInvariants checks the promises of Compiled's doc comment that a
// verdict comparison alone would not catch.
func checkInvariants(t *testing.T, set *Set, labels map[string]string, c *Compiled) {
	t.Helper()
	applying := set.Applying(labels)
	var keys []string
	for _, p := range applying {
		keys = append(keys, p.Key())
	}
	if !slices.Equal(keys, c.Policies) {
		t.Errorf("policies %v, want %v", c.Policies, keys)
	}

	// The set of rules whose peers contain the whole of prefix pfx, named
	// "policy/direction/index", computed directly from the policies, and
	// what those rules grant, normalized.
	rulesAt := func(d Direction, pfx netip.Prefix) (string, string) {
		var names []string
		var keys []uint64
		for pi, p := range applying {
			if !p.Governs(d) {
				continue
			}
			for ri, r := range p.Rules(d) {
				in := len(r.Peers) == 0
				for _, peer := range r.Peers {
					if peer.CIDR.Addr().Is4() == pfx.Addr().Is4() && containsPrefix(peer.CIDR, pfx) &&
						!slices.ContainsFunc(peer.Except, func(e netip.Prefix) bool { return containsPrefix(e, pfx) }) {
						in = true
					}
				}
				if in {
					names = append(names, fmt.Sprintf("%d/%s/%d", pi, d, ri))
					for _, e := range portEntries(r.Ports) {
						keys = append(keys, portKey(e, uint32(pi)))
					}
				}
			}
		}
		return strings.Join(names, ","), allowances(normalizePorts(nil, keys, d, 0))
	}
	// The allowances of each class, as Ports lists them.
	classPorts := map[uint32][]PortEntry{}
	for _, p := range c.Ports {
		classPorts[p.Class] = append(classPorts[p.Class], p)
	}
	classAllows := map[uint32]string{0: ""}
	allowsClass := map[[2]string]uint32{}
	for cl, ps := range classPorts {
		a := allowances(ps)
		classAllows[cl] = a
		k := [2]string{ps[0].Dir.String(), a}
		if other, ok := allowsClass[k]; ok {
			t.Errorf("classes %d and %d grant the same allowances %s", other, cl, a)
		}
		allowsClass[k] = cl
	}
	setClass := map[string]uint32{"": 0}
	seen := map[AddrEntry]bool{}
	for i, e := range c.Addrs {
		if e.Prefix != e.Prefix.Masked() || (e.Prefix.Addr().Is4In6() && e.Prefix.Bits() < 96) {
			t.Errorf("entry %v not masked or not a valid prefix", e)
		}
		if !c.Governed[e.Dir] {
			t.Errorf("entry %v in a direction not governed", e)
		}
		k := AddrEntry{Dir: e.Dir, Prefix: e.Prefix}
		if seen[k] {
			t.Errorf("prefix %v %v listed twice", e.Dir, e.Prefix)
		}
		seen[k] = true
		if i > 0 {
			p := c.Addrs[i-1]
			if cmpEntry(p, e) >= 0 {
				t.Errorf("entries %v and %v out of order", p, e)
			}
		}
		rs, allows := rulesAt(e.Dir, e.Prefix)
		if got, ok := classAllows[e.Class]; !ok || got != allows {
			t.Errorf("class %d at %v grants {%s}, its rules {%s} grant {%s}", e.Class, e.Prefix, got, rs, allows)
		}
		if id, ok := setClass[rs]; ok && id != e.Class {
			t.Errorf("rules {%s} are class %d at %v but %d elsewhere", rs, e.Class, e.Prefix, id)
		}
		setClass[rs] = e.Class
		// Emitted only where the class differs from the enclosing entry's.
		parent := uint32(0)
		for j := i - 1; j >= 0; j-- {
			q := c.Addrs[j]
			if q.Dir == e.Dir && q.Prefix.Addr().Is4() == e.Prefix.Addr().Is4() && containsPrefix(q.Prefix, e.Prefix) {
				parent = q.Class
				break
			}
		}
		if parent == e.Class {
			t.Errorf("entry %v repeats its enclosing class", e)
		}
	}
	mapped := map[uint32]bool{}
	for _, e := range c.Addrs {
		mapped[e.Class] = true
	}
	for i, p := range c.Ports {
		if !mapped[p.Class] || p.Class == 0 {
			t.Errorf("port entry %+v of a class no address maps to", p)
		}
		if int(p.Policy) >= len(c.Policies) {
			t.Errorf("port entry %+v names no policy", p)
		}
		if p.Proto == 0 && (p.Port != 0 || p.Bits != 0) || p.Bits > 16 || uint32(p.Port)&(1<<(16-uint32(p.Bits))-1) != 0 {
			t.Errorf("port entry %+v malformed", p)
		}
		for j, q := range c.Ports {
			if i != j && q.Dir == p.Dir && q.Class == p.Class && portCovers(q, p) {
				t.Errorf("port entry %+v is covered by %+v", p, q)
			}
		}
	}
}

// allowances formats port entries without their class.
func allowances(ps []PortEntry) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "%s:%d/%d/%d@%d ", p.Dir, p.Proto, p.Port, p.Bits, p.Policy)
	}
	return b.String()
}

func cmpEntry(a, b AddrEntry) int {
	fam := func(e AddrEntry) int {
		if e.Prefix.Addr().Is4() {
			return 4
		}
		return 6
	}
	if a.Dir != b.Dir {
		return int(a.Dir) - int(b.Dir)
	}
	if fam(a) != fam(b) {
		return fam(a) - fam(b)
	}
	return comparePrefix(a.Prefix, b.Prefix)
}

// randomSet builds policies over a small address space, so prefixes,
// excepts and rules overlap often.
func randomSet(rng *rand.Rand) *Set {
	v4base := netip.MustParseAddr("10.0.0.0").As4()
	v6base := netip.MustParseAddr("2001:db8::").As16()
	randPrefix := func() netip.Prefix {
		switch rng.IntN(12) {
		case 0:
			return netip.MustParsePrefix("0.0.0.0/0")
		case 1:
			return netip.MustParsePrefix("::/0")
		case 2, 3: // IPv6 and IPv4-mapped IPv6, sharing the low 16 bits
			a := v6base
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom4(v4base).As16()
				a[10], a[11] = 0xff, 0xff
			}
			a[14], a[15] = byte(rng.IntN(256)), byte(rng.IntN(256))
			return netip.PrefixFrom(netip.AddrFrom16(a), 112+rng.IntN(17)).Masked()
		}
		a := v4base
		a[2], a[3] = byte(rng.IntN(256)), byte(rng.IntN(256))
		return netip.PrefixFrom(netip.AddrFrom4(a), 16+rng.IntN(17)).Masked()
	}
	randInside := func(c netip.Prefix) (netip.Prefix, bool) {
		if c.Bits() == c.Addr().BitLen() {
			return netip.Prefix{}, false
		}
		bits := c.Bits() + 1 + rng.IntN(min(c.Addr().BitLen()-c.Bits(), 18))
		b := c.Addr().AsSlice()
		for i := c.Bits(); i < len(b)*8; i++ {
			if rng.IntN(2) == 0 {
				b[i/8] |= 0x80 >> (i % 8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		return netip.PrefixFrom(a, bits).Masked(), true
	}
	randPort := func() Port {
		p := Port{Protocol: []Protocol{TCP, UDP, SCTP}[rng.IntN(3)]}
		switch rng.IntN(8) {
		case 0: // every port of the protocol
		case 1:
			p.Port, p.EndPort = uint16(65500+rng.IntN(36)), 65535
		default:
			p.Port = uint16(1 + rng.IntN(64))
			if rng.IntN(2) == 0 {
				p.EndPort = p.Port + uint16(rng.IntN(40))
			}
		}
		return p
	}
	randRule := func() Rule {
		var r Rule
		if rng.IntN(5) > 0 {
			for range 1 + rng.IntN(3) {
				peer := Peer{CIDR: randPrefix()}
				for range rng.IntN(3) {
					if e, ok := randInside(peer.CIDR); ok {
						peer.Except = append(peer.Except, e)
					}
				}
				r.Peers = append(r.Peers, peer)
			}
		}
		if rng.IntN(5) > 0 {
			for range 1 + rng.IntN(3) {
				r.Ports = append(r.Ports, randPort())
			}
		}
		return r
	}
	selectors := []map[string]string{nil, {"pci-env": "cde"}, {"role": "web"}}
	set := &Set{}
	for i := range 1 + rng.IntN(4) {
		p := &Policy{APIVersion: APIVersion, Kind: Kind}
		p.Metadata.Name = fmt.Sprintf("p%d", i)
		p.Spec.PodSelector.MatchLabels = selectors[rng.IntN(len(selectors))]
		switch rng.IntN(4) {
		case 0:
			p.Spec.HasEgress = rng.IntN(2) == 0
		case 1:
			p.Spec.PolicyTypes = []Direction{Ingress}
		case 2:
			p.Spec.PolicyTypes = []Direction{Egress}
		case 3:
			p.Spec.PolicyTypes = []Direction{Egress, Ingress}
		}
		for _, d := range directions {
			if !p.Governs(d) {
				continue
			}
			var rs []Rule
			for range rng.IntN(4) {
				rs = append(rs, randRule())
			}
			if d == Ingress {
				p.Spec.Ingress, p.Spec.HasIngress = rs, true
			} else {
				p.Spec.Egress = rs
			}
		}
		set.Policies = append(set.Policies, p)
	}
	return set
}

// randomPeers are addresses near the boundaries of the set's prefixes and
// random ones in the same space, in both families.
func randomPeers(rng *rand.Rand, set *Set) []netip.Addr {
	var out []netip.Addr
	add := func(p netip.Prefix) {
		first := p.Addr()
		last := first
		b := first.AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		last, _ = netip.AddrFromSlice(b)
		out = append(out, first, last, first.Prev(), last.Next())
	}
	for _, p := range set.Policies {
		for _, d := range directions {
			for _, r := range p.Rules(d) {
				for _, peer := range r.Peers {
					add(peer.CIDR)
					for _, e := range peer.Except {
						add(e)
					}
				}
			}
		}
	}
	for range 40 {
		v4 := [4]byte{10, 0, byte(rng.IntN(256)), byte(rng.IntN(256))}
		out = append(out, netip.AddrFrom4(v4))
		m := netip.AddrFrom4(v4).As16()
		m[10], m[11] = 0xff, 0xff
		out = append(out, netip.AddrFrom16(m))
		v6 := netip.MustParseAddr("2001:db8::").As16()
		v6[14], v6[15] = byte(rng.IntN(256)), byte(rng.IntN(256))
		out = append(out, netip.AddrFrom16(v6))
	}
	return slices.DeleteFunc(out, func(a netip.Addr) bool { return !a.IsValid() })
}

// TestCompileMatchesReferenceOnRandomSets is the differential test: for
// random policy sets, hosts and packets, the compiled lookup and the plain
// reading of the rules must agree.
func TestCompileMatchesReferenceOnRandomSets(t *testing.T) {
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	rng := rand.New(rand.NewPCG(7, 11))
	hosts := []map[string]string{nil, {"pci-env": "cde"}, {"pci-env": "cde", "role": "web"}}
	protos := []uint8{tcp, udp, sctp, icmp, icmpv6}
	for round := range rounds {
		set := randomSet(rng)
		labels := hosts[rng.IntN(len(hosts))]
		c, err := Compile(set, labels)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, set, labels, c)
		for _, peer := range randomPeers(rng, set) {
			for range 4 {
				proto := protos[rng.IntN(len(protos))]
				port := uint16(rng.IntN(70))
				if rng.IntN(8) == 0 {
					port = uint16(65490 + rng.IntN(46))
				}
				checkPacket(t, set, labels, c, Direction(rng.IntN(2)), peer, proto, port, nil)
			}
		}
		if t.Failed() {
			t.Fatalf("round %d failed", round)
		}
	}
}

// TestCompileClassesStayExactWhenFingerprintsCollide makes every set of
// rules of one size share a fingerprint, and every set of allowances too:
// each class must still grant exactly what its rules grant, and no two
// classes the same, which checkInvariants verifies against the rules.
func TestCompileClassesStayExactWhenFingerprintsCollide(t *testing.T) {
	saved, savedAllowance := ruleHash, allowanceHash
	t.Cleanup(func() { ruleHash, allowanceHash = saved, savedAllowance })
	ruleHash = func(int32) (uint64, uint64) { return 0, 0 }
	allowanceHash = func([]PortEntry) uint64 { return 0 }
	rng := rand.New(rand.NewPCG(3, 5))
	for range 100 {
		set := randomSet(rng)
		c, err := Compile(set, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, set, nil, c)
		for _, peer := range randomPeers(rng, set) {
			checkPacket(t, set, nil, c, Direction(rng.IntN(2)), peer, tcp, uint16(rng.IntN(70)), nil)
		}
		if t.Failed() {
			return
		}
	}
}

// TestCompilePortEntriesDoNotGrowWithDisjointRules: 10,000 rules, each
// allowing TCP 443 from its own host, grant one thing and need one class
// and one port entry; the address trie holds one entry per host.
func TestCompilePortEntriesDoNotGrowWithDisjointRules(t *testing.T) {
	p := &Policy{APIVersion: APIVersion, Kind: Kind}
	p.Metadata.Name = "hosts"
	p.Spec.PolicyTypes = []Direction{Ingress, Egress}
	const n = 10_000
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		r := Rule{Peers: []Peer{{CIDR: netip.PrefixFrom(a, 32)}}, Ports: []Port{{Protocol: TCP, Port: 443}}}
		p.Spec.Ingress = append(p.Spec.Ingress, r)
		p.Spec.Egress = append(p.Spec.Egress, r)
	}
	set := &Set{Policies: []*Policy{p}}
	c, err := Compile(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Addrs) != 2*n {
		t.Errorf("%d address entries, want %d", len(c.Addrs), 2*n)
	}
	want := []PortEntry{
		{Dir: Ingress, Class: 1, Proto: tcp, Port: 443, Bits: 16},
		{Dir: Egress, Class: 2, Proto: tcp, Port: 443, Bits: 16},
	}
	if !reflect.DeepEqual(c.Ports, want) {
		t.Errorf("port entries %+v, want %+v", c.Ports, want)
	}
	for _, peer := range []string{"10.0.0.1", "10.39.15.1", "10.39.16.1", "10.0.0.2"} {
		for _, d := range directions {
			checkPacket(t, set, nil, c, d, netip.MustParseAddr(peer), tcp, 443, nil)
			checkPacket(t, set, nil, c, d, netip.MustParseAddr(peer), tcp, 22, nil)
		}
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	set := Synthetic(20_000, 3, true)
	a, _ := Compile(set, nil)
	b, _ := Compile(set, nil)
	if !reflect.DeepEqual(a, b) {
		t.Error("two compilations of one set differ")
	}
}

// TestCompile100kPrefixesIsFast guards against a quadratic walk creeping
// back in: 100,000 prefixes take well under a second (see
// BenchmarkCompile100k); a quadratic compiler would take minutes.
func TestCompile100kPrefixesIsFast(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: builds a 100,000-prefix set")
	}
	set := Synthetic(100_000, 1, false)
	start := time.Now()
	c, err := Compile(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("compiling 100,000 prefixes took %v", d)
	}
	if len(c.Addrs) < 50_000 {
		t.Errorf("only %d address entries: the set is not what the test means to measure", len(c.Addrs))
	}
}

func BenchmarkCompile100k(b *testing.B) { benchmarkCompile(b, Synthetic(100_000, 1, false)) }

// BenchmarkCompile100kOverlapping is the costly shape: the output grows
// with the number of distinct rule sets times their ports (about two
// million port entries here), and so does the time.
func BenchmarkCompile100kOverlapping(b *testing.B) { benchmarkCompile(b, Synthetic(100_000, 1, true)) }

// BenchmarkCompile100kHostRules is 100,000 rules of one host each, all
// allowing TCP 443: one class, one port entry per direction.
func BenchmarkCompile100kHostRules(b *testing.B) {
	p := &Policy{APIVersion: APIVersion, Kind: Kind}
	p.Metadata.Name = "hosts"
	p.Spec.PolicyTypes = []Direction{Ingress, Egress}
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		r := Rule{Peers: []Peer{{CIDR: netip.PrefixFrom(a, 32)}}, Ports: []Port{{Protocol: TCP, Port: 443}}}
		if i%2 == 0 {
			p.Spec.Ingress = append(p.Spec.Ingress, r)
		} else {
			p.Spec.Egress = append(p.Spec.Egress, r)
		}
	}
	benchmarkCompile(b, &Set{Policies: []*Policy{p}})
}

func benchmarkCompile(b *testing.B, set *Set) {
	b.ReportAllocs()
	var c *Compiled
	for b.Loop() {
		var err error
		if c, err = Compile(set, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(c.Addrs)), "addrs")
	b.ReportMetric(float64(len(c.Ports)), "ports")
}

// BenchmarkParse100k measures reading the same amount of policy as YAML,
// which the worker does on every reload before compiling.
func BenchmarkParse100k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(header + "  ingress:\n")
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range 100_000 {
		if i%100 == 0 {
			sb.WriteString("  - ports: [{port: 443}]\n    from:\n")
		}
		fmt.Fprintf(&sb, "    - ipBlock: {cidr: 10.%d.%d.%d/32}\n", rng.IntN(256), rng.IntN(256), rng.IntN(256))
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("big.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
