package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// The only apiVersion and kind this package reads. The version is ours, not
// Kubernetes': the semantics differ (ipBlock peers only, key presence of
// egress), so a Kubernetes manifest must not be taken silently.
const (
	APIVersion = "pci-segment/v1"
	Kind       = "NetworkPolicy"
)

// Protocol is the IP protocol number a port rule names.
type Protocol uint8

const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	case SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("protocol %d", uint8(p))
}

// Policy is one validated NetworkPolicy document.
type Policy struct {
	APIVersion string
	Kind       string
	Metadata   Metadata
	Spec       Spec
	// Source is where the document starts.
	Source Source
	// nameLine locates metadata.name for the duplicate-name warning.
	nameLine int
}

// Source locates a document.
type Source struct {
	File string
	Doc  int // 1-based index among the file's documents, empty ones included
	Line int
}

// Metadata names a policy. Annotations are free-form; the PCI-DSS
// requirement a policy implements is recorded there.
type Metadata struct {
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
}

// Spec is a policy's selector and rules.
type Spec struct {
	// PodSelector.MatchLabels selects hosts by their labels.
	PodSelector LabelSelector
	// PolicyTypes as written; nil when omitted (see Policy.Governs).
	PolicyTypes []Direction
	Ingress     []Rule
	Egress      []Rule
	// HasIngress and HasEgress record whether the key was present, even
	// with no rules: "egress: []" without policyTypes governs egress (and so
	// denies all of it), while no egress key leaves egress alone.
	HasIngress bool
	HasEgress  bool
}

// LabelSelector is spec.podSelector. Only matchLabels is supported.
type LabelSelector struct {
	MatchLabels map[string]string
}

// Rule is one element of spec.ingress or spec.egress. It allows a packet
// when some peer and some port match.
type Rule struct {
	// Peers is "from" in an ingress rule and "to" in an egress rule; empty
	// means every address of both families.
	Peers []Peer
	// Ports is empty for every port of every protocol.
	Ports []Port
	// Line of the rule in its file, for messages.
	Line int
}

// Peer is an ipBlock: the addresses of CIDR minus those of Except. Every
// except is a strict subset of CIDR, of the same family. Prefixes are
// masked; an IPv4-mapped IPv6 prefix stays IPv6.
type Peer struct {
	CIDR   netip.Prefix
	Except []netip.Prefix
}

// Port is one element of a rule's ports. Port 0 means every port of
// Protocol; EndPort 0 means Port alone, otherwise Port..EndPort inclusive.
type Port struct {
	Protocol Protocol
	Port     uint16
	EndPort  uint16
}

// Key is the policy's unique name in a set: "namespace/name", or "name"
// without a namespace.
func (p *Policy) Key() string {
	if p.Metadata.Namespace == "" {
		return p.Metadata.Name
	}
	return p.Metadata.Namespace + "/" + p.Metadata.Name
}

// Selects reports whether the policy applies to a host with these labels:
// its matchLabels must be a subset of them, and an empty selector selects
// every host.
func (p *Policy) Selects(hostLabels map[string]string) bool {
	for k, v := range p.Spec.PodSelector.MatchLabels {
		if hv, ok := hostLabels[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// Governs reports whether the policy makes direction d default-deny. With
// policyTypes omitted that is Ingress always and Egress when the document
// has an egress key. Kubernetes looks at len(egress) instead; we look at the
// key so "egress: []" is a deny-all egress policy, which is what a reader of
// the YAML expects and the safer of the two readings.
func (p *Policy) Governs(d Direction) bool {
	if len(p.Spec.PolicyTypes) > 0 {
		return slices.Contains(p.Spec.PolicyTypes, d)
	}
	return d == Ingress || p.Spec.HasEgress
}

// Rules returns the rules of direction d.
func (p *Policy) Rules(d Direction) []Rule { return p.Spec.rules(d) }

// Applying returns the policies that select a host with these labels, in
// the set's order (sorted by Key).
func (s *Set) Applying(hostLabels map[string]string) []*Policy {
	var out []*Policy
	for _, p := range s.Policies {
		if p.Selects(hostLabels) {
			out = append(out, p)
		}
	}
	return out
}

// Governed reports, per direction, whether some policy applying to a host
// with these labels governs it.
func (s *Set) Governed(hostLabels map[string]string) [2]bool {
	var g [2]bool
	for _, p := range s.Applying(hostLabels) {
		for _, d := range directions {
			g[d] = g[d] || p.Governs(d)
		}
	}
	return g
}

var directions = [...]Direction{Ingress, Egress}

// FormatLabels writes labels the way ParseLabels reads them, sorted by key.
func FormatLabels(labels map[string]string) string {
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, labels[k]...)
	}
	return string(b)
}
