package policy

import "net/netip"

// Direction is the way a packet crosses an attached interface, seen from the
// host. Its values are the datapath's: they index the governed flags and are
// stored in map keys.
type Direction uint8

const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Compiled is a policy set reduced to what the datapath looks up, with no
// knowledge of how the maps encode it (package bpf does that).
//
// A packet in a governed direction is allowed when the longest prefix in
// Addrs (same direction and family) containing its peer address has a
// non-zero class, and some PortEntry of that class and direction covers its
// protocol and destination port.
type Compiled struct {
	// Governed[d] is true when some applying policy governs direction d.
	Governed [2]bool
	// Addrs maps peer prefixes to classes. Class 0 means "no rule matches"
	// and is present only where it must hide a shorter prefix.
	Addrs []AddrEntry
	// Ports holds, per class, the allowances the class grants.
	Ports []PortEntry
	// Policies names every applying policy; PortEntry.Policy indexes it.
	Policies []string
	// Rules counts the rules of the applying policies.
	Rules int
}

// AddrEntry maps a peer prefix to a class: what the rules whose peers
// contain the whole prefix grant. Prefixes whose rules grant the same
// allowances share a class.
type AddrEntry struct {
	Dir    Direction
	Prefix netip.Prefix // masked; IPv4 prefixes are Is4(), never 4-in-6
	Class  uint32
}

// PortEntry is one allowance of a class.
type PortEntry struct {
	Dir   Direction
	Class uint32
	// Proto is the IP protocol number (6 TCP, 17 UDP, 132 SCTP); 0 means
	// every protocol, and then Port and Bits are zero.
	Proto uint8
	// Port and Bits form a prefix over the 16-bit port: Bits 16 is one
	// port, Bits 0 every port of Proto. Port has its low 16-Bits bits clear.
	Port uint16
	Bits uint8
	// Policy is the index into Compiled.Policies of a policy that grants it.
	Policy uint32
}
