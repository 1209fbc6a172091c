package bench

import (
	"fmt"
	"net/netip"
	"strings"
)

// The names of what the nftables scripts create.
const (
	NftTable = "pcisegment_bench"
	NftSet   = "allow"
	NftChain = "ingress"
)

// NftRuleset is the Allowlist policy of prefixes as one nftables script
// for `nft -f -`: NftSetScript followed by NftChainScript. It replaces a
// table of the same name loaded before.
func NftRuleset(prefixes []netip.Prefix, conntrack bool) (string, error) {
	set, err := NftSetScript(prefixes)
	if err != nil {
		return "", err
	}
	return set + NftChainScript(prefixes[0].Addr().Is6(), conntrack), nil
}

// NftSetScript creates the table, replacing one of that name, holding the
// prefixes in a named interval set. It has no chain yet, so it filters
// nothing: loading the 10,000 elements takes a while, attaching a chain
// that uses them (NftChainScript) does not. The prefixes must all be of
// one family, which names the table's: ip, or ip6.
func NftSetScript(prefixes []netip.Prefix) (string, error) {
	if len(prefixes) == 0 {
		return "", fmt.Errorf("nftables set: no prefixes")
	}
	v6 := prefixes[0].Addr().Is6()
	fam, typ := nftFamily(v6), "ipv4_addr"
	if v6 {
		typ = "ipv6_addr"
	}
	var sb strings.Builder
	// Declaring the table first makes the delete succeed when there is
	// none: the script always starts from nothing.
	fmt.Fprintf(&sb, "table %s %s {}\ndelete table %s %s\n", fam, NftTable, fam, NftTable)
	fmt.Fprintf(&sb, "table %s %s {\n\tset %s {\n\t\ttype %s\n\t\tflags interval\n\t\telements = {", fam, NftTable, NftSet, typ)
	for i, p := range prefixes {
		if p.Addr().Is6() != v6 {
			return "", fmt.Errorf("nftables set: %s is not of the family of %s", p, prefixes[0])
		}
		if i%8 == 0 {
			sb.WriteString("\n\t\t\t")
		} else {
			sb.WriteString(" ")
		}
		sb.WriteString(p.Masked().String())
		if i < len(prefixes)-1 {
			sb.WriteString(",")
		}
	}
	sb.WriteString("\n\t\t}\n\t}\n}\n")
	return sb.String(), nil
}

// NftChainScript adds the base chain that enforces the set of
// NftSetScript: sources in it may reach Port over TCP and UDP, everything
// else of the table's family is dropped (the chain's policy). With
// conntrack, a first rule accepts packets of established and related
// connections, which turns connection tracking on in the namespace;
// without it, nothing tracks connections.
//
// The hook is prerouting, at filter priority, on every interface: the ip
// and ip6 families have no ingress hook (only netdev and inet do), and
// prerouting is the earliest they have. Like a tcx ingress program, it
// sees every packet that arrives, before the routing decision, whether
// addressed to the host or not; input would see only the former, after
// the route lookup. For packets addressed to the host the two hooks apply
// the same rules.
func NftChainScript(v6, conntrack bool) string {
	fam, saddr := nftFamily(v6), "ip saddr"
	if v6 {
		saddr = "ip6 saddr"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "table %s %s {\n\tchain %s {\n\t\ttype filter hook prerouting priority filter; policy drop;\n", fam, NftTable, NftChain)
	if conntrack {
		sb.WriteString("\t\tct state established,related accept\n")
	}
	fmt.Fprintf(&sb, "\t\t%s @%s meta l4proto { tcp, udp } th dport %d accept\n\t}\n}\n", saddr, NftSet, Port)
	return sb.String()
}

// NftChainDeleteScript removes NftChainScript's chain, keeping the set:
// the table then filters nothing, and with the chain gone its conntrack
// rule no longer keeps connection tracking on.
func NftChainDeleteScript(v6 bool) string {
	return fmt.Sprintf("delete chain %s %s %s\n", nftFamily(v6), NftTable, NftChain)
}

func nftFamily(v6 bool) string {
	if v6 {
		return "ip6"
	}
	return "ip"
}
