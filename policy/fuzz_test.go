package policy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParse feeds the parser arbitrary bytes: it must never panic, and
// whatever it accepts must hold the invariants Compile relies on and
// compile to what the reference evaluator decides.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"../examples/policies", "../examples/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	for _, s := range []string{
		"",
		"---\n---\n",
		header,
		header + "  ingress: [{}]\n  egress: []\n",
		header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}], ports: [{port: 80, endPort: 90}]}]\n",
		header + "  egress: [{to: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}], ports: [{protocol: SCTP}]}]\n",
		header + "  ingress: &a [{}]\n  egress: *a\n",
		header + "  ingress: [{}\n",
		"a: [[[[[[[[[[]]]]]]]]]]\n",
		"? [a]\n: b\n",
		"!!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pols, err := Parse("fuzz.yaml", data)
		for _, e := range AsErrors(err) {
			if e.File != "fuzz.yaml" || e.Err == nil || e.Requirement == "" || strings.Contains(e.Error(), "\n") {
				t.Fatalf("malformed finding %q", e)
			}
		}
		set := &Set{}
		seen := map[string]bool{}
		for _, p := range pols {
			checkPolicy(t, p)
			if !seen[p.Key()] {
				seen[p.Key()] = true
				set.Policies = append(set.Policies, p)
			}
		}
		slices.SortFunc(set.Policies, func(a, b *Policy) int { return strings.Compare(a.Key(), b.Key()) })
		labels := map[string]string{"pci-env": "cde"}
		// The PCI checks take whatever parses, and say where and why.
		for _, e := range set.Audit(labels) {
			if e.Requirement == "" || e.Err == nil || strings.Contains(e.Error(), "\n") ||
				e.File == "" && !strings.HasPrefix(e.Field, "labels ") {
				t.Fatalf("malformed audit finding %q", e)
			}
		}
		c, err := Compile(set, labels)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range set.Applying(labels) {
			for _, d := range directions {
				for _, r := range p.Rules(d) {
					for _, peer := range r.Peers {
						for _, port := range []uint16{0, 1, 80, 443, 65535} {
							checkPacket(t, set, labels, c, d, peer.CIDR.Addr(), tcp, port, nil)
						}
					}
				}
			}
		}
	})
}

// checkPolicy asserts what the parser promises about a policy it accepted.
func checkPolicy(t *testing.T, p *Policy) {
	t.Helper()
	if p.APIVersion != APIVersion || p.Kind != Kind || checkName(p.Metadata.Name) != nil {
		t.Fatalf("accepted %q %q %q", p.APIVersion, p.Kind, p.Metadata.Name)
	}
	for _, d := range directions {
		if len(p.Rules(d)) > 0 && !p.Governs(d) {
			t.Fatalf("accepted %s rules in a direction the policy does not govern", d)
		}
		for _, r := range p.Rules(d) {
			for _, peer := range r.Peers {
				if !peer.CIDR.IsValid() || peer.CIDR != peer.CIDR.Masked() {
					t.Fatalf("accepted cidr %v", peer.CIDR)
				}
				for _, e := range peer.Except {
					if e != e.Masked() || e.Addr().Is4() != peer.CIDR.Addr().Is4() || e.Bits() <= peer.CIDR.Bits() || !peer.CIDR.Contains(e.Addr()) {
						t.Fatalf("accepted except %v of %v", e, peer.CIDR)
					}
				}
			}
			for _, port := range r.Ports {
				if port.Protocol != TCP && port.Protocol != UDP && port.Protocol != SCTP ||
					port.EndPort != 0 && (port.Port == 0 || port.EndPort < port.Port) {
					t.Fatalf("accepted port %+v", port)
				}
			}
		}
	}
}
