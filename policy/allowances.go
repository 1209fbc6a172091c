package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Allowances lists, one readable line each, what the policies selecting a
// host with these labels allow: direction, peer, protocol and ports, and the
// policy. The audit log compares the lists of two sets to say what a change
// added and removed (PCI-DSS Req 1.2.2). A governed direction with no rule
// is listed as denying everything, so that governing a direction shows too.
func (s *Set) Allowances(hostLabels map[string]string) []string {
	var out []string
	for _, p := range s.Policies {
		if !p.Selects(hostLabels) {
			continue
		}
		for _, d := range []Direction{Ingress, Egress} {
			if !p.Governs(d) {
				continue
			}
			rules := p.Spec.rules(d)
			if len(rules) == 0 {
				out = append(out, fmt.Sprintf("%s: nothing (%s)", d, p.Key()))
			}
			for _, r := range rules {
				peers := []string{"any address"}
				if len(r.Peers) > 0 {
					peers = nil
					for _, pe := range r.Peers {
						peers = append(peers, pe.String())
					}
				}
				ports := []string{"every port of every protocol"}
				if len(r.Ports) > 0 {
					ports = nil
					for _, pt := range r.Ports {
						switch {
						case pt.Port == 0:
							ports = append(ports, pt.Protocol.String()+" every port")
						case pt.EndPort != 0:
							ports = append(ports, fmt.Sprintf("%s %d-%d", pt.Protocol, pt.Port, pt.EndPort))
						default:
							ports = append(ports, fmt.Sprintf("%s %d", pt.Protocol, pt.Port))
						}
					}
				}
				way := "from"
				if d == Egress {
					way = "to"
				}
				for _, peer := range peers {
					for _, port := range ports {
						out = append(out, fmt.Sprintf("%s %s %s: %s (%s)", d, way, peer, port, p.Key()))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Changed compares two allowance lists (sorted, as Allowances returns
// them): what is in now and not in before, and the other way round.
func Changed(before, now []string) (added, removed []string) {
	for _, a := range now {
		if _, found := slices.BinarySearch(before, a); !found {
			added = append(added, a)
		}
	}
	for _, r := range before {
		if _, found := slices.BinarySearch(now, r); !found {
			removed = append(removed, r)
		}
	}
	return added, removed
}

// String is the peer as the allowances and the report print it: the cidr,
// and "except a,b" for its excepts.
func (p Peer) String() string {
	s := p.CIDR.String()
	if len(p.Except) > 0 {
		var ex []string
		for _, e := range p.Except {
			ex = append(ex, e.String())
		}
		s += " except " + strings.Join(ex, ",")
	}
	return s
}
