package policy

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// header is a valid document up to the spec body, which starts on line 7.
const header = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: p
spec:
  podSelector: {}
`

func mustParse(t *testing.T, doc string) []*Policy {
	t.Helper()
	pols, err := Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return pols
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name  string
		doc   string
		field string
		line  int
		msg   string
		// count of findings; 0 means exactly one
		count int
	}{
		{
			name: "unknown top-level field", field: "status", line: 7,
			doc: header + "status: {}\n",
			msg: "unknown field; remove it (allowed here: apiVersion, kind, metadata, spec)",
		},
		{
			name: "unknown field deep in a peer, with suggestion", field: "spec.ingress[0].from[1].ipBlock.cidrr", line: 11,
			doc: header + `  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8}
    - ipBlock:
        cidrr: 10.1.0.0/16
`,
			msg: `unknown field; did you mean "cidr"? (allowed here: cidr, except)`, count: 2,
		},
		{
			name: "field given twice", field: "spec.podSelector", line: 7,
			doc: header + "  podSelector: {}\n",
			msg: "field appears twice (first on line 6); keep one",
		},
		{
			name: "kubernetes apiVersion", field: "apiVersion", line: 1,
			doc: strings.Replace(header, "pci-segment/v1", "networking.k8s.io/v1", 1),
			msg: `"networking.k8s.io/v1" is not supported; use "pci-segment/v1"`,
		},
		{
			name: "missing apiVersion", field: "apiVersion", line: 1,
			doc: strings.Replace(header, "apiVersion: pci-segment/v1\n", "", 1),
			msg: `required; add "apiVersion: pci-segment/v1"`,
		},
		{
			name: "wrong kind", field: "kind", line: 2,
			doc: strings.Replace(header, "kind: NetworkPolicy", "kind: Policy", 1),
			msg: `"Policy" is not supported; use "NetworkPolicy"`,
		},
		{
			name: "missing name", field: "metadata.name", line: 4,
			doc: strings.Replace(header, "  name: p\n", "  namespace: cde\n", 1),
			msg: "required; name the policy",
		},
		{
			name: "name not a DNS subdomain", field: "metadata.name", line: 4,
			doc: strings.Replace(header, "name: p", "name: My_Policy", 1),
			msg: `name "My_Policy" is not a DNS subdomain; use lowercase letters`,
		},
		{
			name: "number where a string belongs", field: "metadata.name", line: 4,
			doc: strings.Replace(header, "name: p", "name: 123", 1),
			msg: `must be a string, not a number; quote it: "123"`,
		},
		{
			name: "missing spec", field: "spec", line: 1,
			doc: strings.Replace(header, "spec:\n  podSelector: {}\n", "", 1),
			msg: "required; add a spec with at least podSelector: {}",
		},
		{
			name: "missing podSelector", field: "spec.podSelector", line: 6,
			doc: strings.Replace(header, "  podSelector: {}\n", "  policyTypes: [Ingress]\n", 1),
			msg: `required; write "podSelector: {}" to select every host`,
		},
		{
			name: "matchExpressions", field: "spec.podSelector.matchExpressions", line: 8,
			doc: strings.Replace(header, "  podSelector: {}\n", "  podSelector:\n    matchLabels: {a: b}\n    matchExpressions: []\n", 1),
			msg: "matchExpressions is not supported; list the required labels under matchLabels",
		},
		{
			name: "bad label value", field: "spec.podSelector.matchLabels.pci-env", line: 8,
			doc: strings.Replace(header, "  podSelector: {}\n", "  podSelector:\n    matchLabels:\n      pci-env: \"c d e\"\n", 1),
			msg: `value "c d e" is not a valid label value`,
		},
		{
			name: "policy type in lower case", field: "spec.policyTypes[1]", line: 7,
			doc: header + "  policyTypes: [Ingress, egress]\n",
			msg: `policy type "egress" is not supported; use Ingress or Egress (exact case)`,
		},
		{
			name: "policy type twice", field: "spec.policyTypes[1]", line: 7,
			doc: header + "  policyTypes: [Ingress, Ingress]\n",
			msg: "Ingress is listed twice; list it once",
		},
		{
			name: "rules of a direction policyTypes leaves out", field: "spec.egress", line: 8,
			doc: header + "  policyTypes: [Ingress]\n  egress: [{}]\n",
			msg: "egress rules have no effect because policyTypes does not list Egress; add Egress to policyTypes or remove spec.egress",
		},
		{
			name: "ingress not a list", field: "spec.ingress", line: 7,
			doc: header + "  ingress: {from: []}\n",
			msg: "must be a list, not a mapping",
		},
		{
			name: "bare dash as a rule", field: "spec.ingress[0]", line: 8,
			doc: header + "  ingress:\n  -\n",
			msg: "empty rule; write {} for a rule that allows every peer and port",
		},
		{
			name: "to in an ingress rule", field: "spec.ingress[0].to", line: 7,
			doc: header + "  ingress: [{to: []}]\n",
			msg: `ingress rules name their peers under "from", not "to"`,
		},
		{
			name: "podSelector peer", field: "spec.ingress[0].from[0].podSelector", line: 9,
			doc: header + "  ingress:\n  - from:\n    - podSelector: {matchLabels: {role: web}}\n",
			msg: "podSelector peers select Kubernetes pods, which a host does not have; describe the peer by its addresses with ipBlock",
		},
		{
			name: "namespaceSelector peer", field: "spec.egress[0].to[0].namespaceSelector", line: 9,
			doc: header + "  egress:\n  - to:\n    - namespaceSelector: {}\n",
			msg: "namespaceSelector peers select Kubernetes pods",
		},
		{
			name: "peer without ipBlock", field: "spec.ingress[0].from[0].ipBlock", line: 7,
			doc: header + "  ingress: [{from: [{}]}]\n",
			msg: "required; describe the peer by its addresses with ipBlock",
		},
		{
			name: "cidr with host bits", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]\n",
			msg: `cidr "10.0.0.1/8" has host bits set; use "10.0.0.0/8"`,
		},
		{
			name: "IPv6 cidr with host bits", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: \"2001:db8::1/32\"}}]}]\n",
			msg: `cidr "2001:db8::1/32" has host bits set; use "2001:db8::/32"`,
		},
		{
			name: "IPv4-mapped cidr with host bits stays IPv6", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: \"::ffff:10.0.0.1/104\"}}]}]\n",
			msg: `cidr "::ffff:10.0.0.1/104" has host bits set; use "::ffff:10.0.0.0/104"`,
		},
		{
			name: "malformed cidr", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0/8}}]}]\n",
			msg: `cidr "10.0.0/8" is malformed (IPv4 address too short); write ADDRESS/BITS`,
		},
		{
			name: "cidr with a field over 255", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.256/32}}]}]\n",
			msg: `cidr "10.0.0.256/32" is malformed (IPv4 field has value >255); write ADDRESS/BITS such as "10.0.0.0/8" or "2001:db8::/32"`,
		},
		{
			name: "cidr without length", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1}}]}]\n",
			msg: `cidr "10.0.0.1" has no prefix length; use "10.0.0.1/32" for that one address`,
		},
		{
			name: "cidr missing", field: "spec.ingress[0].from[0].ipBlock.cidr", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {except: [10.0.0.0/8]}}]}]\n",
			msg: "required; give the peer's addresses",
		},
		{
			name: "except outside its cidr", field: "spec.ingress[0].from[0].ipBlock.except[0]", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}]\n",
			msg: `except "192.168.0.0/16" is not inside cidr "10.0.0.0/8"; an except must be a strict subset of its cidr`,
		},
		{
			name: "except wider than its cidr", field: "spec.ingress[0].from[0].ipBlock.except[0]", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.1.0.0/16, except: [10.0.0.0/8]}}]}]\n",
			msg: `except "10.0.0.0/8" is not inside cidr "10.1.0.0/16"`,
		},
		{
			name: "except equal to its cidr", field: "spec.ingress[0].from[0].ipBlock.except[0]", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]\n",
			msg: `except "10.0.0.0/8" equals its cidr, which would leave the peer empty; remove the peer instead`,
		},
		{
			name: "except of the other family", field: "spec.ingress[0].from[0].ipBlock.except[0]", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: \"::/0\", except: [10.0.0.0/8]}}]}]\n",
			msg: `except "10.0.0.0/8" is IPv4 but cidr "::/0" is IPv6; an except must be of its cidr's family`,
		},
		{
			name: "except with host bits", field: "spec.ingress[0].from[0].ipBlock.except[0]", line: 7,
			doc: header + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.1/16]}}]}]\n",
			msg: `except "10.1.0.1/16" has host bits set; use "10.1.0.0/16"`,
		},
		{
			name: "named port", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: https}]}]\n",
			msg: `named port "https" is not supported: a host has no named container ports; use the port number`,
		},
		{
			name: "quoted number is a named port", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: \"443\"}]}]\n",
			msg: `named port "443" is not supported`,
		},
		{
			name: "port zero", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: 0}]}]\n",
			msg: "port 0 is out of range; use 1-65535, or leave port out for every port",
		},
		{
			name: "port above 65535", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: 65536}]}]\n",
			msg: "port 65536 is out of range; use 1-65535",
		},
		{
			name: "hexadecimal port", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: 0x50}]}]\n",
			msg: `port "0x50" is not written in decimal; write it as a plain decimal number 1-65535`,
		},
		{
			name: "fractional port", field: "spec.ingress[0].ports[0].port", line: 7,
			doc: header + "  ingress: [{ports: [{port: 80.5}]}]\n",
			msg: "must be a port number, not a fractional number; write a whole number 1-65535",
		},
		{
			name: "lower-case protocol", field: "spec.ingress[0].ports[0].protocol", line: 7,
			doc: header + "  ingress: [{ports: [{protocol: tcp, port: 80}]}]\n",
			msg: `protocol "tcp" is not supported; use TCP, UDP or SCTP (exact case)`,
		},
		{
			name: "unsupported protocol", field: "spec.egress[0].ports[0].protocol", line: 7,
			doc: header + "  egress: [{ports: [{protocol: ICMP}]}]\n",
			msg: `protocol "ICMP" is not supported; use TCP, UDP or SCTP`,
		},
		{
			name: "endPort without port", field: "spec.ingress[0].ports[0].endPort", line: 7,
			doc: header + "  ingress: [{ports: [{protocol: UDP, endPort: 100}]}]\n",
			msg: `endPort needs port; add "port: N" as the start of the range`,
		},
		{
			name: "endPort below port", field: "spec.ingress[0].ports[0].endPort", line: 7,
			doc: header + "  ingress: [{ports: [{port: 443, endPort: 80}]}]\n",
			msg: "endPort 80 is below port 443; endPort must be >= port",
		},
		{
			name: "named endPort", field: "spec.ingress[0].ports[0].endPort", line: 7,
			doc: header + "  ingress: [{ports: [{port: 443, endPort: max}]}]\n",
			msg: "must be a port number, not a string; write a whole number 1-65535",
		},
		{
			name: "alias", field: "spec.egress", line: 8,
			doc: header + "  ingress: &r [{}]\n  egress: *r\n",
			msg: "YAML aliases (*r) are not supported; write the value out in full",
		},
		{
			name: "document that is a list", field: "", line: 1,
			doc: "- apiVersion: pci-segment/v1\n",
			msg: "a policy document must be a mapping with apiVersion, kind, metadata and spec, not a list",
		},
		{
			name: "YAML syntax error", field: "", line: 7,
			doc: header + "  ingress: [{}\n  egress: []\n",
			msg: "invalid YAML: did not find expected ',' or ']'; fix the syntax (the rest of the file was not read)",
		},
		{
			name: "odd unknown key is quoted in the path", field: `spec."x y\n"`, line: 7,
			doc: header + "  \"x y\\n\": 1\n",
			msg: "unknown field; remove it",
		},
		{
			name: "label key twice", field: "spec.podSelector.matchLabels.a", line: 8,
			doc: strings.Replace(header, "  podSelector: {}\n", "  podSelector:\n    matchLabels: {a: b,\n      a: c}\n", 1),
			msg: "key appears twice (first on line 7); keep one",
		},
		{
			name: "label value that is a boolean", field: "metadata.labels.enabled", line: 5,
			doc: strings.Replace(header, "  name: p\n", "  name: p\n  labels: {enabled: true}\n", 1),
			msg: `must be a string, not a boolean; quote it: "true"`,
		},
		{
			name: "annotation key with a control character", field: `metadata.annotations."a\x01"`, line: 6,
			doc: strings.Replace(header, "  name: p\n", "  name: p\n  annotations:\n    \"a\\x01\": b\n", 1),
			msg: "key contains a control character; use printable characters",
		},
		{
			name: "namespace not a DNS label", field: "metadata.namespace", line: 5,
			doc: strings.Replace(header, "  name: p\n", "  name: p\n  namespace: a.b\n", 1),
			msg: `namespace "a.b" is not a DNS label; use lowercase letters`,
		},
		{
			name: "YAML scanner error", field: "", line: 7,
			doc: header + "  ingress: a: b\n",
			msg: "invalid YAML: mapping values are not allowed in this context; fix the syntax",
		},
		{
			name: "key YAML reads as a number", field: "metadata.annotations", line: 6,
			doc: strings.Replace(header, "  name: p\n", "  name: p\n  annotations:\n    1.3: yes\n", 1),
			msg: `key "1.3" is a fractional number; keys must be strings, quote it`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tt.doc))
			errs := AsErrors(err)
			want := max(tt.count, 1)
			if len(errs) != want {
				t.Errorf("want %d findings, got %d:\n%v", want, len(errs), errs)
			}
			for _, f := range errs {
				if f.Field == tt.field && f.Line == tt.line && strings.Contains(f.Err.Error(), tt.msg) {
					if f.File != "test.yaml" || f.Doc != 1 {
						t.Errorf("finding names %s document %d, want test.yaml document 1", f.File, f.Doc)
					}
					if !saysWhatToDo(f.Err.Error()) {
						t.Errorf("message does not say what to do: %s", f.Err)
					}
					return
				}
			}
			t.Errorf("no finding test.yaml:%d: document 1: %s: ...%s...\ngot:\n%v", tt.line, tt.field, tt.msg, errs)
		})
	}
}

// saysWhatToDo is a coarse check that a message proposes a next step.
func saysWhatToDo(msg string) bool {
	for _, w := range []string{"use ", "add ", "remove ", "write ", "quote ", "give ", "fix ", "keep ", "list ", "rename ", "did you mean", "describe ", "name ", "endPort must be", "leave ", "start "} {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}

func TestParseReportsEveryErrorOfEveryDocument(t *testing.T) {
	doc := header + `  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.1/8}
    ports:
    - {protocol: tcp}
    - {port: http}
---
` + strings.Replace(header, "name: p", "name: q", 1) + "  egress: [{to: [{podSelector: {}}]}]\n"
	pols, err := Parse("multi.yaml", []byte(doc))
	if len(pols) != 0 {
		t.Errorf("invalid documents must not yield policies, got %d", len(pols))
	}
	var got []string
	for _, f := range AsErrors(err) {
		got = append(got, f.Error()[:strings.Index(f.Error(), ": ")+len(": document N: ")]+f.Field)
	}
	want := []string{
		"multi.yaml:9: document 1: spec.ingress[0].from[0].ipBlock.cidr",
		"multi.yaml:11: document 1: spec.ingress[0].ports[0].protocol",
		"multi.yaml:12: document 1: spec.ingress[0].ports[1].port",
		"multi.yaml:20: document 2: spec.egress[0].to[0].podSelector",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !errors.As(err, new(Errors)) {
		t.Errorf("error is %T, want Errors", err)
	}
}

func TestParseMultiDocumentSkipsEmptyDocumentsButCountsThem(t *testing.T) {
	doc := "# leading comment\n---\n" + header + "---\n---\n# only a comment\n---\n" +
		strings.Replace(header, "name: p", "name: q", 1) + "---\n" +
		strings.Replace(header, "name: p", "name: r", 1) + "  bogus: 1\n"
	pols, err := Parse("m.yaml", []byte(doc))
	if len(pols) != 2 || pols[0].Metadata.Name != "p" || pols[1].Metadata.Name != "q" {
		t.Fatalf("got %d policies, want p and q", len(pols))
	}
	if pols[0].Source.Doc != 1 || pols[1].Source.Doc != 4 {
		t.Errorf("documents %d and %d, want 1 and 4", pols[0].Source.Doc, pols[1].Source.Doc)
	}
	errs := AsErrors(err)
	if len(errs) != 1 || errs[0].Doc != 5 || errs[0].Field != "spec.bogus" {
		t.Errorf("want one error in document 5 at spec.bogus, got %v", errs)
	}
}

func TestParseEmptyFileHasNoPolicy(t *testing.T) {
	for _, doc := range []string{"", "# nothing\n", "---\n", "---\n~\n---\n"} {
		pols, err := Parse("e.yaml", []byte(doc))
		if len(pols) != 0 || err != nil {
			t.Errorf("%q: got %d policies, err %v", doc, len(pols), err)
		}
	}
}

func TestParseReadsEveryField(t *testing.T) {
	doc := `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: web
  namespace: cde
  labels: {team: payments}
  annotations:
    pci-dss/requirement: "1.3.1"
    note: free text, with spaces
spec:
  podSelector:
    matchLabels: {pci-env: cde, role: web}
  policyTypes: [Egress, Ingress]
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24, 10.0.2.5/32]}
    - ipBlock: {cidr: "::ffff:192.0.2.0/120"}
    ports:
    - {port: 443}
    - {protocol: UDP, port: 5000, endPort: 5010}
    - {protocol: SCTP}
    - {}
  - {}
  egress: []
`
	got := mustParse(t, doc)[0]
	want := &Policy{
		APIVersion: APIVersion, Kind: Kind,
		Metadata: Metadata{
			Name: "web", Namespace: "cde",
			Labels:      map[string]string{"team": "payments"},
			Annotations: map[string]string{"pci-dss/requirement": "1.3.1", "note": "free text, with spaces"},
		},
		Spec: Spec{
			PodSelector: LabelSelector{MatchLabels: map[string]string{"pci-env": "cde", "role": "web"}},
			PolicyTypes: []Direction{Egress, Ingress},
			Ingress: []Rule{
				{
					Peers: []Peer{
						{CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.2.5/32")}},
						{CIDR: netip.MustParsePrefix("::ffff:192.0.2.0/120")},
					},
					Ports: []Port{{TCP, 443, 0}, {UDP, 5000, 5010}, {SCTP, 0, 0}, {TCP, 0, 0}},
					Line:  15,
				},
				{Line: 23},
			},
			Egress:     []Rule{},
			HasIngress: true, HasEgress: true,
		},
		Source:   Source{File: "test.yaml", Doc: 1, Line: 1},
		nameLine: 4,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.Key() != "cde/web" {
		t.Errorf("key %q, want cde/web", got.Key())
	}
	// IPv4-mapped IPv6 stays IPv6: never converted to IPv4.
	if m := got.Spec.Ingress[0].Peers[1].CIDR; !m.Addr().Is6() || !m.Addr().Is4In6() || m.Bits() != 120 {
		t.Errorf("mapped prefix became %v", m)
	}
}

func TestEvaluateNamesTheDecidingRule(t *testing.T) {
	set := loadDocs(t,
		named("b")+"  ingress:\n  - ports: [{port: 22}]\n  - ports: [{port: 443}]\n",
		named("a")+"  ingress:\n  - ports: [{port: 443}]\n",
	)
	peer := netip.MustParseAddr("192.0.2.1")
	v := set.Evaluate(nil, Ingress, peer, tcp, 443)
	if !v.Allowed || !v.Governed || v.Policy != "a" || v.Rule != "spec.ingress[0]" || v.Source.Line != 18 || v.Source.Doc != 2 {
		t.Errorf("got %+v", v)
	}
	if s := v.String(); !strings.HasPrefix(s, "allow: policy a spec.ingress[0] (") || !strings.HasSuffix(s, "p.yaml:18)") {
		t.Errorf("String() = %q", s)
	}
	if v := set.Evaluate(nil, Ingress, peer, tcp, 80); v.Allowed || !v.Governed || v.Policy != "" {
		t.Errorf("got %+v", v)
	} else if !strings.HasPrefix(v.String(), "deny:") {
		t.Errorf("String() = %q", v)
	}
	if v := set.Evaluate(nil, Egress, peer, tcp, 80); !v.Allowed || v.Governed {
		t.Errorf("got %+v", v)
	} else if !strings.Contains(v.String(), "governed by no applying policy") {
		t.Errorf("String() = %q", v)
	}
	// A zone on the address does not change the verdict.
	if v := set.Evaluate(nil, Ingress, netip.MustParseAddr("fe80::1%eth0"), tcp, 22); !v.Allowed || v.Policy != "b" {
		t.Errorf("got %+v", v)
	}
}

func TestPolicyTypes(t *testing.T) {
	tests := []struct {
		name            string
		spec            string
		ingress, egress bool
	}{
		{"omitted, no rules: ingress", "", true, false},
		{"omitted, ingress key: ingress", "  ingress: []\n", true, false},
		{"omitted, egress key absent: ingress only", "  ingress: [{}]\n", true, false},
		{"omitted, empty egress list: both", "  egress: []\n", true, true},
		{"omitted, null egress: both", "  egress:\n", true, true},
		{"omitted, egress rules: both", "  egress: [{}]\n", true, true},
		{"empty list is omitted", "  policyTypes: []\n  egress: []\n", true, true},
		{"Egress only", "  policyTypes: [Egress]\n", false, true},
		{"Ingress only, ingress empty", "  policyTypes: [Ingress]\n  ingress: []\n", true, false},
		{"Ingress only, empty egress list allowed", "  policyTypes: [Ingress]\n  egress: []\n", true, false},
		{"both", "  policyTypes: [Ingress, Egress]\n", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, header+tt.spec)[0]
			if p.Governs(Ingress) != tt.ingress || p.Governs(Egress) != tt.egress {
				t.Errorf("governs ingress %v egress %v, want %v %v", p.Governs(Ingress), p.Governs(Egress), tt.ingress, tt.egress)
			}
		})
	}
}

func TestSelects(t *testing.T) {
	tests := []struct {
		selector string
		host     map[string]string
		want     bool
	}{
		{"{}", nil, true},
		{"{}", map[string]string{"a": "b"}, true},
		{"{matchLabels: {}}", nil, true},
		{"{matchLabels: {pci-env: cde}}", map[string]string{"pci-env": "cde", "role": "web"}, true},
		{"{matchLabels: {pci-env: cde, role: web}}", map[string]string{"pci-env": "cde"}, false},
		{"{matchLabels: {pci-env: cde}}", map[string]string{"pci-env": "dev"}, false},
		{"{matchLabels: {pci-env: cde}}", nil, false},
		{`{matchLabels: {empty: ""}}`, map[string]string{"empty": ""}, true},
	}
	for _, tt := range tests {
		p := mustParse(t, strings.Replace(header, "podSelector: {}", "podSelector: "+tt.selector, 1))[0]
		if got := p.Selects(tt.host); got != tt.want {
			t.Errorf("selector %s, host %v: got %v, want %v", tt.selector, tt.host, got, tt.want)
		}
	}
}
