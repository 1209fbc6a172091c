package policy

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// auditDoc writes a policy document: selector and annotations in flow
// syntax ("" for none) and the spec after podSelector.
func auditDoc(name, selector, annotations, spec string) string {
	md := "  name: " + name + "\n"
	if annotations != "" {
		md += "  annotations: " + annotations + "\n"
	}
	sel := "{}"
	if selector != "" {
		sel = "{matchLabels: " + selector + "}"
	}
	return "apiVersion: pci-segment/v1\nkind: NetworkPolicy\nmetadata:\n" + md +
		"spec:\n  podSelector: " + sel + "\n" + spec
}

const (
	cde       = "{pci-env: cde}"
	annotated = `{pci-dss/requirement: "1.3.1"}`
	// justifiedAnn silences insecure-service and cde-public-*, so tests of
	// other checks are not drowned in them.
	justifiedAnn = `{pci-dss/requirement: "1.4.2", pci-segment/justification: "public checkout page"}`
	toBastion    = "{from: [{ipBlock: {cidr: 10.99.0.10/32}}], ports: [{port: 22}]}"
)

// governed governs both directions of every CDE host and admits SSH from
// the bastion, adding no other peer or port.
var governed = auditDoc("governed", cde, annotated, "  policyTypes: [Ingress, Egress]\n  ingress: ["+toBastion+"]\n")

// cdeSet is docs followed by governed, so that tests of other checks are
// not drowned in the cde-ungoverned-* and cde-ssh-cut findings of the
// hosts their selectors name.
func cdeSet(docs ...string) []string { return append(docs, governed) }

// found is a finding as the audit tables expect it: msg is a substring.
type found struct {
	req, level, field, msg string
}

func (f found) String() string {
	return fmt.Sprintf("[req %s] %s %s: ...%s...", f.req, f.level, f.field, f.msg)
}

// auditFindings validates docs, all in one file, for a host with labels
// ("" for none), and checks that its findings are exactly want, in order.
func auditFindings(t *testing.T, docs []string, labels string, want []found) []*Finding {
	t.Helper()
	dir := writeFiles(t, map[string]string{"p.yaml": strings.Join(docs, "---\n")})
	hostLabels, err := ParseLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	r := Validate([]string{filepath.Join(dir, "p.yaml")}, hostLabels)
	got := append(append([]*Finding{}, r.Errors...), r.Warnings...)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Requirement == w.req && g.Level().String() == w.level && g.Field == w.field && strings.Contains(g.Err.Error(), w.msg)
	}
	if !ok {
		var lines []string
		for _, w := range want {
			lines = append(lines, w.String())
		}
		t.Errorf("got\n%v\nwant\n%s", Errors(got), strings.Join(lines, "\n"))
	}
	for _, f := range got {
		if f.Requirement == "" || strings.Contains(f.Error(), "\n") || (f.File == "") != strings.HasPrefix(f.Field, "labels ") {
			t.Errorf("malformed finding %q", f)
		}
	}
	if r.Valid() != (len(r.Errors) == 0) || r.Valid() != (r.Set != nil) {
		t.Errorf("valid %v with %d errors and set %v", r.Valid(), len(r.Errors), r.Set != nil)
	}
	return got
}

type auditTest struct {
	name   string
	docs   []string
	labels string
	want   []found
}

func runAuditTests(t *testing.T, tests []auditTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { auditFindings(t, tt.docs, tt.labels, tt.want) })
	}
}

func TestAuditJudgesExposureOnAddressSpace(t *testing.T) {
	everyTCP := func(field string) found {
		return found{"1.2.5", "warning", field, "CDE rule allows every TCP port because this entry has no port"}
	}
	runAuditTests(t, []auditTest{
		{
			name: "0.0.0.0/1 plus 128.0.0.0/1 is the whole of IPv4",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - from: [{ipBlock: {cidr: 0.0.0.0/1}}, {ipBlock: {cidr: 128.0.0.0/1}}]\n    ports: [{protocol: TCP}]\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "CDE ingress admits every IPv4 address on every TCP port through these peers; " +
					"list only the peers that need to reach the CDE, on the ports they need"},
				everyTCP("spec.ingress[0].ports[0]"),
			},
		},
		{
			name: "::/1 plus 8000::/1 is the whole of IPv6, across rules",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: \"::/1\"}}], ports: [{protocol: UDP}]}\n"+
				"  - {from: [{ipBlock: {cidr: \"8000::/1\"}}], ports: [{protocol: UDP}]}\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "every IPv6 address on every UDP port through these peers together with p spec.ingress[1].from ("},
				{"1.2.5", "warning", "spec.ingress[0].ports[0]", "every UDP port"},
				{"1.2.5", "warning", "spec.ingress[1].ports[0]", "every UDP port"},
			},
		},
		{
			name: "0.0.0.0/0 except 10.0.0.0/8 is not the whole of IPv4, but all of its public addresses",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}], ports: [{protocol: TCP}]}\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "CDE ingress admits every public IPv4 address on every TCP port through these peers; " +
					"list only the peers that need to reach the CDE"},
				everyTCP("spec.ingress[0].ports[0]"),
			},
		},
		{
			name: "an except is filled by another peer",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {ipBlock: {cidr: 10.0.0.0/9}}, {ipBlock: {cidr: 10.128.0.0/9}}], ports: [{protocol: TCP}]}\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "every IPv4 address on every TCP port"},
				everyTCP("spec.ingress[0].ports[0]"),
			},
		},
		{
			name: "an IPv4-mapped IPv6 prefix does not complete IPv4",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/1}}, {ipBlock: {cidr: \"::ffff:128.0.0.0/97\"}}], ports: [{protocol: TCP}]}\n")),
			want: []found{everyTCP("spec.ingress[0].ports[0]")},
		},
		{
			name: "an ingress rule without from admits every address of both families",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{}]\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0]", `CDE ingress admits every IPv4 and IPv6 address on every port of every protocol ` +
					`through this rule, which has no "from" and so admits every peer`},
				{"1.2.5", "warning", "spec.ingress[0]", "CDE rule allows every port of every protocol because it lists no ports"},
			},
		},
		{
			name: "egress is judged under 1.3.2",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  egress: [{to: [{ipBlock: {cidr: \"::/0\"}}]}]\n")),
			want: []found{
				{"1.3.2", "error", "spec.egress[0].to", "CDE egress reaches every IPv6 address on every port of every protocol through these peers; " +
					"list only the peers the CDE needs to reach"},
				{"1.2.5", "warning", "spec.egress[0]", "every port of every protocol"},
			},
		},
		{
			name: "every port is judged on ranges: 1-1000 plus 1001-65535",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 1, endPort: 1000}]}\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 1001, endPort: 65535}]}\n")),
			want: []found{
				// The rule with more ports is the wider one.
				{"1.3.1", "error", "spec.ingress[1].from", "every IPv4 address on every TCP port through these peers together with p spec.ingress[0].from"},
			},
		},
		{
			name: "every port of one protocol, not of another",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 1, endPort: 1000}, {protocol: UDP, port: 1001, endPort: 65535}]}\n")),
			want: nil, // public ports, but justified
		},
		{
			name: "CDE policies on the same hosts combine",
			docs: cdeSet(
				auditDoc("a", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
				auditDoc("b", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 128.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
			),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "every IPv4 address on every TCP port through these peers together with b spec.ingress[0].from ("},
				everyTCP("spec.ingress[0].ports[0]"),
				everyTCP("spec.ingress[0].ports[0]"),
			},
		},
		{
			name: "CDE policies that never apply to one host together do not combine",
			docs: cdeSet(
				auditDoc("a", "{pci-env: cde, role: web}", justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
				auditDoc("b", "{pci-env: cde, role: db}", justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 128.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
			),
			want: []found{everyTCP("spec.ingress[0].ports[0]"), everyTCP("spec.ingress[0].ports[0]")},
		},
		{
			name:   "but they do on the host --labels names",
			labels: "pci-env=cde,role=web,zone=a",
			docs: cdeSet(
				auditDoc("a", "{pci-env: cde, role: web}", justifiedAnn, "  policyTypes: [Ingress, Egress]\n"+
					"  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
				auditDoc("b", "{pci-env: cde, zone: a}", justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 128.0.0.0/1}}], ports: [{protocol: TCP}]}]\n"),
			),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "every IPv4 address on every TCP port through these peers together with b spec.ingress[0].from ("},
				everyTCP("spec.ingress[0].ports[0]"),
				everyTCP("spec.ingress[0].ports[0]"),
			},
		},
		{
			name: "a policy that is not a CDE policy is not judged",
			docs: []string{auditDoc("p", "{role: web}", justifiedAnn, "  ingress: [{}]\n  egress: [{}]\n")},
			want: nil,
		},
		{
			name:   "with --labels naming a CDE host, a policy applying to it is a CDE policy",
			labels: "pci-env=cde",
			docs:   []string{auditDoc("p", "", justifiedAnn, "  ingress: [{}]\n")},
			want: []found{
				{"1.3.1", "error", "spec.ingress[0]", "every IPv4 and IPv6 address on every port of every protocol"},
				{"1.2.5", "warning", "spec.ingress[0]", "every port of every protocol"},
				{"1.3.2", "warning", "labels pci-env=cde", "egress of this CDE host is governed by no applying policy"},
			},
		},
		{
			name: "a policy for every host counts on the CDE hosts the selectors name, and is a CDE policy",
			docs: cdeSet(
				auditDoc("all", "", "", "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]\n"),
				auditDoc("db", cde, annotated, "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 5432}]}]\n"),
			),
			want: []found{
				{"12.5.2", "warning", "metadata.annotations", "CDE policy has no pci-dss annotation"},
				{"1.4.2", "warning", "spec.ingress[0].from", "CDE ingress admits every IPv4 address on TCP 443 through these peers, " +
					"as a public service would; if that is intended, record why in a pci-segment/justification annotation, otherwise list only"},
			},
		},
		{
			name: "the whole family on specific ports is a public service",
			docs: cdeSet(auditDoc("p", cde, annotated, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: \"::/0\"}}], ports: [{port: 443}, {port: 8443, endPort: 8444}]}\n"+
				"  - {ports: [{protocol: UDP, port: 53}]}\n")),
			want: []found{
				{"1.4.2", "warning", "spec.ingress[0].from", "CDE ingress admits every IPv4 and IPv6 address on TCP 443, 8443-8444; UDP 53 " +
					"through these peers together with p spec.ingress[1] ("},
			},
		},
		{
			name: "a justified public service is no finding",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]\n")),
			want: nil,
		},
		{
			name: "egress to the whole family on a port warns under 1.3.2",
			docs: cdeSet(auditDoc("p", cde, annotated, "  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 443}]}]\n")),
			want: []found{
				{"1.3.2", "warning", "spec.egress[0].to", "CDE egress reaches every IPv4 address on TCP 443 through these peers, as a public service would"},
			},
		},
		{
			name: "a justified policy does not excuse one without that completes the family",
			docs: cdeSet(
				auditDoc("a", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{port: 443}]}]\n"),
				auditDoc("b", cde, annotated, "  ingress: [{from: [{ipBlock: {cidr: 128.0.0.0/1}}], ports: [{port: 443}]}]\n"),
			),
			want: []found{
				{"1.4.2", "warning", "spec.ingress[0].from", "every IPv4 address on TCP 443 through these peers together with a spec.ingress[0].from ("},
			},
		},
		{
			name: "two justified halves are a justified public service",
			docs: cdeSet(
				auditDoc("a", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{port: 443}]}]\n"),
				auditDoc("b", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 128.0.0.0/1}}], ports: [{port: 443}]}]\n"),
			),
			want: nil,
		},
		{
			name: "a justification does not excuse every port",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{from: [{ipBlock: {cidr: 0.0.0.0/0}}]}]\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "every IPv4 address on every port of every protocol"},
				{"1.2.5", "warning", "spec.ingress[0]", "every port of every protocol"},
			},
		},
	})
}

// Peers that leave out only a few public addresses expose the CDE to the
// internet as surely as 0.0.0.0/0 does.
func TestAuditJudgesExposureOnPublicSpace(t *testing.T) {
	ingress := func(ann, peers, ports string) []string {
		return cdeSet(auditDoc("p", cde, ann, "  ingress: [{from: ["+peers+"]"+ports+"}]\n"))
	}
	const (
		mysql = ", ports: [{port: 3306}]"
		https = ", ports: [{port: 443}]"
	)
	public := func(addrs, ports string) found {
		return found{"1.4.2", "warning", "spec.ingress[0].from", "CDE ingress admits " + addrs + " on " + ports +
			" through these peers, as a public service would; if that is intended, record why in a " +
			"pci-segment/justification annotation, otherwise list only the peers that need to reach the CDE"}
	}
	everyPortOfEvery := found{"1.2.5", "warning", "spec.ingress[0]", "every port of every protocol"}
	runAuditTests(t, []auditTest{
		{
			name: "0.0.0.0/0 except a private address is every public IPv4 address",
			docs: ingress(annotated, "{ipBlock: {cidr: 0.0.0.0/0, except: [10.1.2.3/32]}}", mysql),
			want: []found{public("every public IPv4 address", "TCP 3306")},
		},
		{
			name: "0.0.0.0/0 except a public address is nearly every public IPv4 address",
			docs: ingress(annotated, "{ipBlock: {cidr: 0.0.0.0/0, except: [192.0.2.0/24, 8.8.8.8/32]}}", mysql),
			want: []found{public("nearly every public IPv4 address", "TCP 3306")},
		},
		{
			name: "leaving out a /8 of public addresses is still nearly every one",
			docs: ingress(annotated, "{ipBlock: {cidr: 0.0.0.0/0, except: [8.0.0.0/8]}}", mysql),
			want: []found{public("nearly every public IPv4 address", "TCP 3306")},
		},
		{
			name: "leaving out one address more than a /8 is not",
			docs: ingress(annotated, "{ipBlock: {cidr: 0.0.0.0/0, except: [8.0.0.0/8, 9.0.0.0/32]}}", mysql),
			want: nil,
		},
		{
			name: "private, shared, loopback, link-local, documentation, multicast and reserved space is not public",
			docs: ingress(justifiedAnn, "{ipBlock: {cidr: 0.0.0.0/0, except: [0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, "+
				"169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 198.18.0.0/15, 203.0.113.0/24, 224.0.0.0/3]}}", ""),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "CDE ingress admits every public IPv4 address on every port of every protocol through these peers"},
				everyPortOfEvery,
			},
		},
		{
			name: "2000::/3 is every public IPv6 address",
			docs: ingress(justifiedAnn, `{ipBlock: {cidr: "2000::/3"}}`, ""),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "CDE ingress admits every public IPv6 address on every port of every protocol through these peers"},
				everyPortOfEvery,
			},
		},
		{
			name: "2000::/3 except a /12 is nearly every public IPv6 address",
			docs: ingress(annotated, `{ipBlock: {cidr: "2000::/3", except: ["2400::/12"]}}`, https),
			want: []found{public("nearly every public IPv6 address", "TCP 443")},
		},
		{
			name: "IPv6 outside 2000::/3 is not public",
			docs: ingress(justifiedAnn, `{ipBlock: {cidr: "fc00::/7"}}, {ipBlock: {cidr: "fe80::/10"}}, {ipBlock: {cidr: "::ffff:0:0/96"}}, `+
				`{ipBlock: {cidr: "64:ff9b::/96"}}, {ipBlock: {cidr: "ff00::/8"}}`, ""),
			want: []found{everyPortOfEvery},
		},
		{
			name: "the public addresses of both families read as one finding",
			docs: ingress(annotated, `{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {ipBlock: {cidr: "2000::/3"}}`, https),
			want: []found{public("every public IPv4 and IPv6 address", "TCP 443")},
		},
		{
			name: "the whole of one family and the public addresses of the other are two findings",
			docs: ingress(annotated, `{ipBlock: {cidr: 0.0.0.0/0}}, {ipBlock: {cidr: "2000::/3"}}`, https),
			want: []found{public("every IPv4 address", "TCP 443"), public("every public IPv6 address", "TCP 443")},
		},
		{
			name: "rules together leave out a /8",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress:\n"+
				"  - {from: [{ipBlock: {cidr: 0.0.0.0/1}}], ports: [{protocol: TCP}]}\n"+
				"  - {from: [{ipBlock: {cidr: 128.0.0.0/1, except: [128.0.0.0/8]}}], ports: [{protocol: TCP}]}\n")),
			want: []found{
				{"1.3.1", "error", "spec.ingress[0].from", "CDE ingress admits nearly every public IPv4 address on every TCP port " +
					"through these peers together with p spec.ingress[1].from ("},
				{"1.2.5", "warning", "spec.ingress[0].ports[0]", "every TCP port"},
				{"1.2.5", "warning", "spec.ingress[1].ports[0]", "every TCP port"},
			},
		},
		{
			name: "egress to nearly every public address warns under 1.3.2",
			docs: cdeSet(auditDoc("p", cde, annotated, "  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [1.1.1.1/32]}}], ports: [{port: 443}]}]\n")),
			want: []found{
				{"1.3.2", "warning", "spec.egress[0].to", "CDE egress reaches nearly every public IPv4 address on TCP 443 through these peers, as a public service would"},
			},
		},
		{
			name: "a justified public service may leave addresses out",
			docs: ingress(justifiedAnn, "{ipBlock: {cidr: 0.0.0.0/0, except: [8.8.8.8/32]}}", https),
			want: nil,
		},
	})
}

func TestAuditWarnsAboutEveryPortInTheCDE(t *testing.T) {
	from := "from: [{ipBlock: {cidr: 10.0.0.0/8}}]"
	runAuditTests(t, []auditTest{
		{
			name: "a rule without ports",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{"+from+"}]\n")),
			want: []found{{"1.2.5", "warning", "spec.ingress[0]", "CDE rule allows every port of every protocol because it lists no ports; list only the ports the service needs"}},
		},
		{
			name: "an entry without a port",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{"+from+", ports: [{port: 443}, {protocol: UDP}]}]\n")),
			want: []found{{"1.2.5", "warning", "spec.ingress[0].ports[1]", "CDE rule allows every UDP port because this entry has no port"}},
		},
		{
			name: "a range of every port",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{protocol: SCTP, port: 1, endPort: 65535}]}]\n")),
			want: []found{{"1.2.5", "warning", "spec.egress[0].ports[0]", "CDE rule allows every SCTP port: port 1 to endPort 65535 is all of them"}},
		},
		{
			name: "entries that together cover every port",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{"+from+", ports: [{port: 1, endPort: 100}, {port: 90, endPort: 65535}]}]\n")),
			want: []found{{"1.2.5", "warning", "spec.ingress[0].ports", "CDE rule allows every TCP port: its TCP entries together cover 1-65535"}},
		},
		{
			name: "all but one port is fine",
			docs: cdeSet(auditDoc("p", cde, justifiedAnn, "  ingress: [{"+from+", ports: [{port: 1, endPort: 100}, {port: 102, endPort: 65535}]}]\n")),
			want: nil,
		},
		{
			name: "not a CDE policy",
			docs: []string{auditDoc("p", "{role: web}", justifiedAnn, "  ingress: [{"+from+"}]\n")},
			want: nil,
		},
		{
			name: "a policy for every host is a CDE policy when a selector names a CDE host",
			docs: cdeSet(auditDoc("p", "", justifiedAnn, "  ingress: [{"+from+"}]\n")),
			want: []found{{"1.2.5", "warning", "spec.ingress[0]", "CDE rule allows every port of every protocol"}},
		},
		{
			name: "so is a policy selecting other labels of such a host",
			docs: []string{
				auditDoc("p", "{role: web}", justifiedAnn, "  ingress: [{"+from+"}]\n"),
				auditDoc("web", "{pci-env: cde, role: web}", annotated, "  policyTypes: [Ingress, Egress]\n  ingress: ["+toBastion+"]\n"),
			},
			want: []found{{"1.2.5", "warning", "spec.ingress[0]", "CDE rule allows every port of every protocol"}},
		},
	})
}

func TestAuditWarnsAboutInsecureServices(t *testing.T) {
	rule := func(ports string) []string {
		return []string{auditDoc("p", "{role: web}", "", "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: ["+ports+"]}]\n")}
	}
	const record = "or record the measures that secure it in a pci-segment/justification annotation"
	runAuditTests(t, []auditTest{
		{
			name: "telnet", docs: rule("{port: 23}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "TCP 23 admits telnet (TCP 23), an insecure cleartext service; use SSH instead, " + record}},
		},
		{
			name: "a range covering FTP and telnet", docs: rule("{port: 443}, {port: 20, endPort: 25}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[1]", "TCP 20-25 admits FTP (TCP 20-21), telnet (TCP 23), insecure cleartext services; " +
				"use their secure alternatives (FTP: SFTP or FTPS; telnet: SSH), " + record}},
		},
		{
			name: "FTP data", docs: rule("{port: 20}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "FTP (TCP 20-21)"}},
		},
		{
			name: "rsh, rlogin, rexec", docs: rule("{port: 513}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "rexec, rlogin and rsh (TCP 512-514)"}},
		},
		{
			name: "SNMP", docs: rule("{protocol: UDP, port: 162}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "UDP 162 admits SNMP v1/v2c (UDP 161-162), an insecure cleartext service; use SNMPv3 with authPriv instead"}},
		},
		{
			name: "TFTP", docs: rule("{protocol: UDP, port: 60, endPort: 70}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "TFTP (UDP 69)"}},
		},
		{
			name: "every port of a protocol", docs: rule("{protocol: UDP}"),
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "every UDP port is admitted, including TFTP (UDP 69), SNMP v1/v2c (UDP 161-162), insecure"}},
		},
		{
			name: "a rule without ports",
			docs: []string{auditDoc("p", "{role: web}", "", "  egress: [{}]\n")},
			want: []found{{"1.2.6", "warning", "spec.egress[0]", "rule lists no ports, so it admits every port, including FTP (TCP 20-21), telnet (TCP 23), TFTP (UDP 69)"}},
		},
		{name: "the protocol matters: SNMP over TCP", docs: rule("{port: 161}"), want: nil},
		{name: "the protocol matters: telnet over UDP", docs: rule("{protocol: UDP, port: 23}"), want: nil},
		{name: "SSH", docs: rule("{port: 22}"), want: nil},
		{name: "a range between services", docs: rule("{port: 24, endPort: 109}"), want: nil},
		{
			name: "a justification", want: nil,
			docs: []string{auditDoc("p", "{role: web}", `{pci-segment/justification: "telnet to a legacy HSM over an IPsec tunnel"}`,
				"  ingress: [{ports: [{port: 23}]}]\n")},
		},
		{
			name: "a blank justification is none",
			docs: []string{auditDoc("p", "{role: web}", `{pci-segment/justification: "  "}`, "  ingress: [{ports: [{port: 23}]}]\n")},
			want: []found{{"1.2.6", "warning", "spec.ingress[0].ports[0]", "telnet"}},
		},
	})
}

func TestAuditWarnsAboutAMissingPCIDSSAnnotation(t *testing.T) {
	body := "  ingress: [" + toBastion + "]\n"
	runAuditTests(t, []auditTest{
		{
			name: "CDE policy without", docs: cdeSet(auditDoc("p", cde, "", body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations", `CDE policy has no pci-dss annotation; add one naming the requirement it implements, e.g. pci-dss/requirement: "1.3.1"`}},
		},
		{
			name: "CDE policy with other annotations only", docs: cdeSet(auditDoc("p", cde, "{owner: payments}", body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations", "no pci-dss annotation"}},
		},
		{name: "CDE policy with one", docs: cdeSet(auditDoc("p", cde, annotated, body))},
		{name: "any key starting pci-dss counts", docs: cdeSet(auditDoc("p", cde, `{pci-dss.example.com/scope: cde}`, body))},
		{name: "requirements and appendices by number", docs: cdeSet(auditDoc("p", cde, `{pci-dss/requirement: "1.3.1, 12.5.2,A3.2.1, 1,"}`, body))},
		{
			name: "a requirement that is not a number", docs: cdeSet(auditDoc("p", cde, `{pci-dss/requirement: "1.3.1, segmentation"}`, body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations.pci-dss/requirement",
				`pci-dss/requirement "1.3.1, segmentation": "segmentation" is not a PCI-DSS requirement number; list the requirements this policy implements by number, comma-separated, e.g. "1.3.1, 1.3.2"`}},
		},
		{
			name: "a requirement out of range", docs: cdeSet(auditDoc("p", cde, `{pci-dss/requirement: "13.1"}`, body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations.pci-dss/requirement", `"13.1" is not a PCI-DSS requirement number`}},
		},
		{
			name: "an empty requirement", docs: cdeSet(auditDoc("p", cde, `{pci-dss/requirement: " , "}`, body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations.pci-dss/requirement", "pci-dss/requirement names no requirement"}},
		},
		{name: "a free-text requirement outside the CDE", docs: []string{auditDoc("p", "{role: web}", `{pci-dss/requirement: "n/a"}`, body)}},
		{name: "not a CDE policy", docs: []string{auditDoc("p", "{role: web}", "", body)}},
		{
			name: "a policy for every host, when a selector names a CDE host", docs: cdeSet(auditDoc("p", "", "", body)),
			want: []found{{"12.5.2", "warning", "metadata.annotations", "no pci-dss annotation"}},
		},
		{name: "a policy for every host, when no CDE host is named or inferred", docs: []string{auditDoc("p", "", "", body)}},
		{
			name: "a policy applying to the CDE host --labels names", labels: "pci-env=cde",
			docs: []string{auditDoc("p", "", "", "  policyTypes: [Ingress, Egress]\n"+body)},
			want: []found{{"12.5.2", "warning", "metadata.annotations", "no pci-dss annotation"}},
		},
	})
}

func TestAuditWarnsWhenRemoteAdministrationWouldBeCut(t *testing.T) {
	spec := func(rules string) []string {
		return []string{auditDoc("p", cde, justifiedAnn, "  policyTypes: [Ingress, Egress]\n  ingress: ["+rules+"]\n")}
	}
	cut := found{"1.2.5", "warning", "spec.ingress", "on a host labelled pci-env=cde,role=web ingress is governed and no rule admits TCP 22 from any address: " +
		"remote administration over SSH would be cut; add a rule admitting TCP 22 from the management network or jump host"}
	// Without --labels, the host a CDE selector names is judged.
	cutInferred := found{"1.2.5", "warning", "spec.ingress", "on a host labelled only pci-env=cde ingress is governed and no rule admits TCP 22 from any address"}
	https := "  policyTypes: [Ingress, Egress]\n  ingress: [{ports: [{port: 443}]}]\n"
	runAuditTests(t, []auditTest{
		{name: "HTTPS only", labels: "pci-env=cde,role=web", docs: spec("{ports: [{port: 443}]}"), want: []found{cut}},
		{name: "no rule at all", labels: "pci-env=cde,role=web", docs: spec(""), want: []found{cut}},
		{name: "SSH over UDP is not SSH", labels: "pci-env=cde,role=web", docs: spec("{ports: [{protocol: UDP, port: 22}]}"), want: []found{cut}},
		{name: "SSH from a bastion", labels: "pci-env=cde,role=web", docs: spec(toBastion)},
		{name: "a range covering 22", labels: "pci-env=cde,role=web", docs: spec("{from: [{ipBlock: {cidr: 10.99.0.0/24}}], ports: [{port: 20, endPort: 30}]}")},
		{
			name: "in another applying policy", labels: "pci-env=cde,role=web",
			docs: append(spec("{ports: [{port: 443}]}"), auditDoc("admin", "", annotated, "  policyTypes: [Ingress, Egress]\n  ingress: ["+toBastion+"]\n")),
		},
		{name: "no host named: the host the selector names", docs: spec("{ports: [{port: 443}]}"), want: []found{cutInferred}},
		{
			name: "hosts cut at the same policy share one finding",
			docs: []string{
				auditDoc("p", cde, justifiedAnn, https),
				auditDoc("web", "{pci-env: cde, role: web}", annotated, "  policyTypes: [Ingress, Egress]\n"),
			},
			want: []found{cutInferred},
		},
		{
			// A set orders its policies by name: for the web host "a"
			// comes first, and "b" is all the other host has.
			name: "a host cut at another policy is its own finding",
			docs: []string{
				auditDoc("a", "{pci-env: cde, role: web}", justifiedAnn, https),
				auditDoc("b", cde, justifiedAnn, https),
			},
			want: []found{
				{"1.2.5", "warning", "spec.ingress", "on a host labelled only pci-env=cde,role=web ingress is governed and no rule admits TCP 22"},
				cutInferred,
			},
		},
		{
			name: "not a CDE host", labels: "role=web",
			docs: []string{auditDoc("p", "", "", "  ingress: [{ports: [{port: 443}]}]\n")},
		},
		{
			name: "ingress not governed: the ungoverned warning says it", labels: "pci-env=cde",
			docs: []string{auditDoc("p", cde, annotated, "  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 443}]}]\n")},
			want: []found{{"1.3.1", "warning", "labels pci-env=cde", "ingress of this CDE host is governed by no applying policy and is not filtered (PCI-DSS Req 1.3.1)"}},
		},
	})
}

// Without --labels the set does not say which hosts exist: each selector
// requiring pci-env: cde stands for the host carrying exactly its labels,
// and that host's directions are judged like the named host's.
func TestAuditJudgesTheCDEHostsSelectorsName(t *testing.T) {
	ingress := "  policyTypes: [Ingress]\n  ingress: [" + toBastion + "]\n"
	egress := "  policyTypes: [Egress]\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 443}]}]\n"
	ungoverned := func(d, labels string) found {
		req, types := "1.3.2", "Egress"
		if d == "ingress" {
			req, types = "1.3.1", "Ingress"
		}
		return found{req, "warning", "spec.podSelector", d + " of a host labelled only " + labels + ", which this selector selects, " +
			"is governed by no applying policy and is not filtered (PCI-DSS Req " + req + "); list " + types +
			" in the policyTypes of this or another policy selecting such a host, with rules for the " + d + " traffic it needs"}
	}
	hostEgress := func(labels string) found {
		return found{"1.3.2", "warning", "labels " + labels, "egress of this CDE host is governed by no applying policy"}
	}
	runAuditTests(t, []auditTest{
		{
			name: "ungoverned egress is warned once, at the first selector naming the host",
			docs: []string{auditDoc("a", cde, annotated, ingress), auditDoc("b", cde, annotated, ingress)},
			want: []found{ungoverned("egress", "pci-env=cde")},
		},
		{
			name: "ungoverned ingress",
			docs: []string{auditDoc("a", cde, annotated, egress)},
			want: []found{ungoverned("ingress", "pci-env=cde")},
		},
		{
			name: "each selector names its own host",
			docs: []string{
				auditDoc("web", "{pci-env: cde, role: web}", annotated, ingress),
				auditDoc("db", "{pci-env: cde, tier: db}", annotated, egress),
			},
			want: []found{ungoverned("egress", "pci-env=cde,role=web"), ungoverned("ingress", "pci-env=cde,tier=db")},
		},
		{
			// A policy with fewer labels applies to the hosts with more,
			// not the other way round.
			name: "a wider selector governs the narrower one's host",
			docs: []string{
				auditDoc("web", "{pci-env: cde, role: web}", annotated, ingress),
				auditDoc("all", cde, annotated, egress),
			},
			want: []found{ungoverned("ingress", "pci-env=cde")},
		},
		{
			name: "a gap the named host shares is the named host's finding alone", labels: "pci-env=cde,role=web",
			docs: []string{auditDoc("a", cde, annotated, ingress)},
			want: []found{hostEgress("pci-env=cde,role=web")},
		},
		{
			name: "a gap the named host does not share is the selector's", labels: "pci-env=cde,role=web",
			docs: []string{
				auditDoc("web", "{pci-env: cde, role: web}", annotated, egress),
				auditDoc("all", cde, annotated, ingress),
			},
			want: []found{ungoverned("egress", "pci-env=cde")},
		},
		{
			name: "a selector that does not select the named host is judged apart", labels: "pci-env=cde,role=web",
			docs: []string{auditDoc("db", "{pci-env: cde, tier: db}", annotated, ingress)},
			want: []found{
				ungoverned("egress", "pci-env=cde,tier=db"),
				{"1.2.1", "warning", "labels pci-env=cde,role=web", "no policy selects these labels"},
				{"1.3.1", "warning", "labels pci-env=cde,role=web", "ingress of this CDE host is governed by no applying policy"},
				hostEgress("pci-env=cde,role=web"),
			},
		},
		{
			name: "a selector not requiring pci-env: cde names no CDE host",
			docs: []string{auditDoc("web", "{role: web}", annotated, ingress)},
			want: nil,
		},
	})
}

func TestAuditWarnsAboutDuplicateNames(t *testing.T) {
	doc := auditDoc("same", cde, annotated, "  ingress: ["+toBastion+"]\n")
	got := auditFindings(t, []string{doc, doc}, "", []found{
		{"1.3.2", "warning", "spec.podSelector", "egress of a host labelled only pci-env=cde"},
		{"10.2.2", "warning", "metadata.name", `policy "same" is already defined in`},
	})
	if len(got) == 2 && (got[1].Doc != 2 || got[1].Line != 13) {
		t.Errorf("points at document %d line %d, want the second name: document 2 line 13", got[1].Doc, got[1].Line)
	}
}
