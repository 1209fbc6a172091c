package bench

import (
	"fmt"
	"net/netip"
	"strings"
)

// Port is the port the benchmark policies allow (iperf3's default).
const Port = 5201

// Allowlist is the benchmarks' policy set as YAML: one ingress policy of n
// disjoint peer prefixes in rules of 100, each rule allowing TCP and UDP to
// Port, with peer's prefix among them (first) so that the traffic measured
// is allowed by a real lookup. IPv4 prefixes are /28s in 10.128.0.0/9,
// IPv6 /64s in fd80::/16: neither overlaps the lab's addresses. It is the
// same set for ours and for nftables (NftRuleset).
func Allowlist(n int, v6 bool, peer netip.Prefix) []byte {
	var sb strings.Builder
	sb.WriteString(`apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: bench-allowlist
  namespace: bench
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
`)
	for i, p := range Prefixes(n, v6, peer) {
		if i%100 == 0 {
			fmt.Fprintf(&sb, "  - ports: [{protocol: TCP, port: %d}, {protocol: UDP, port: %d}]\n    from:\n", Port, Port)
		}
		fmt.Fprintf(&sb, "    - ipBlock: {cidr: %s}\n", p)
	}
	return []byte(sb.String())
}

// Prefixes are Allowlist's n prefixes, peer's first.
func Prefixes(n int, v6 bool, peer netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	if n > 0 {
		out = append(out, peer.Masked())
	}
	for i := 1; i < n; i++ {
		if v6 {
			a := [16]byte{0xfd, 0x80, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			out = append(out, netip.PrefixFrom(netip.AddrFrom16(a), 64))
		} else {
			v := 10<<24 | 128<<16 + uint32(i)<<4 // the i-th /28 of 10.128.0.0/9
			a := [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
			out = append(out, netip.PrefixFrom(netip.AddrFrom4(a), 28))
		}
	}
	return out
}
