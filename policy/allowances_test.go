package policy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestAllowancesAndWhatAChangeDid(t *testing.T) {
	load := func(body string) *Set {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load([]string{dir})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	v1 := load(`apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {role: web}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.5.0.0/16]}}]
      ports: [{protocol: TCP, port: 443}, {protocol: UDP, port: 1000, endPort: 1010}]
`)
	v2 := load(`apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {role: web}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.5.0.0/16]}}]
      ports: [{protocol: TCP, port: 443}]
  egress:
    - ports: [{protocol: UDP, port: 53}]
`)
	host := map[string]string{"role": "web"}
	a1 := v1.Allowances(host)
	want := []string{
		"egress: nothing (web)",
		"ingress from 10.0.0.0/8 except 10.5.0.0/16: TCP 443 (web)",
		"ingress from 10.0.0.0/8 except 10.5.0.0/16: UDP 1000-1010 (web)",
	}
	if !slices.Equal(a1, want) {
		t.Errorf("allowances %q, want %q", a1, want)
	}
	added, removed := Changed(a1, v2.Allowances(host))
	if !slices.Equal(added, []string{"egress to any address: UDP 53 (web)"}) ||
		!slices.Equal(removed, []string{"egress: nothing (web)", "ingress from 10.0.0.0/8 except 10.5.0.0/16: UDP 1000-1010 (web)"}) {
		t.Errorf("added %q, removed %q", added, removed)
	}
	if got := v1.Allowances(map[string]string{"role": "db"}); len(got) != 0 {
		t.Errorf("a host the policy does not select: %q", got)
	}
}
