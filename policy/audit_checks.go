package policy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Annotations the checks read. Any annotation key starting with
// pciDSSAnnotationPrefix documents which requirement a policy implements.
const (
	JustificationAnnotation = "pci-segment/justification"
	pciDSSAnnotationPrefix  = "pci-dss"
	// RequirementAnnotation lists the PCI-DSS requirements a policy
	// implements, by number and comma-separated ("1.3.1, 1.3.2"); the
	// compliance report cites them.
	RequirementAnnotation = "pci-dss/requirement"
)

// requirementNumber is a PCI-DSS v4.0 requirement or sub-requirement:
// 1 to 12 or an appendix (A1 to A3), then up to three numbered levels.
var requirementNumber = regexp.MustCompile(`^(A[1-3]|1[0-2]|[1-9])(\.[0-9]{1,2}){0,3}$`)

// Requirements splits a RequirementAnnotation value into its requirement
// numbers; bad is the first entry that is not one, "" when all are.
func Requirements(value string) (reqs []string, bad string) {
	for _, q := range strings.Split(value, ",") {
		switch q = strings.TrimSpace(q); {
		case q == "": // a stray comma
		case requirementNumber.MatchString(q):
			reqs = append(reqs, q)
		case bad == "":
			bad = q
		}
	}
	return reqs, bad
}

// Audit judges a loaded set against PCI-DSS v4.0 and returns its errors and
// warnings (see "Findings" in the package documentation), sorted by file,
// document and line, host-level findings last. The CDE hosts judged are
// those the selectors requiring pci-env: cde name (cdeHosts) and, when
// hostLabels names a CDE host, that host too. With hostLabels not nil,
// HostWarnings for that host are added.
func (s *Set) Audit(hostLabels map[string]string) []*Finding {
	a := &auditor{
		set: s, labels: hostLabels,
		lines: newFieldLines(s.Files), rules: make(map[ruleID]*auditRule), seen: make(map[string]bool),
	}
	a.hosts = a.cdeHosts()
	a.duplicates()
	for _, p := range s.Policies {
		a.policy(p)
	}
	for _, h := range a.hosts {
		a.exposure(h.labels)
	}
	if hostLabels != nil {
		a.out = append(a.out, s.HostWarnings(hostLabels)...)
	}
	for _, h := range a.hosts {
		if !h.named { // HostWarnings judged the named host
			a.ungoverned(h)
		}
		a.remoteAdministration(h)
	}
	rank := make(map[string]int, len(s.Files))
	for i, f := range s.Files {
		rank[f.Path] = i + 1
	}
	slices.SortStableFunc(a.out, func(x, y *Finding) int {
		rx, ry := rank[x.File], rank[y.File]
		if rx == 0 || ry == 0 { // host-level, last
			return cmp.Compare(ry, rx)
		}
		return cmp.Or(cmp.Compare(rx, ry), cmp.Compare(x.Doc, y.Doc), cmp.Compare(x.Line, y.Line))
	})
	return a.out
}

type auditor struct {
	set    *Set
	labels map[string]string // the host --labels names; nil for none
	hosts  []cdeHost         // the CDE hosts judged (cdeHosts)
	lines  *fieldLines
	rules  map[ruleID]*auditRule
	seen   map[string]bool // findings already made, for those several hosts share
	out    []*Finding
}

// isCDE reports whether p is a CDE policy: one that applies to some CDE
// host the audit judges. A selector requiring pci-env: cde always does; an
// empty one, or one naming other labels of a CDE host, does too, since
// its rules are enforced there and the exposure checks count them.
func (a *auditor) isCDE(p *Policy) bool {
	return slices.ContainsFunc(a.hosts, func(h cdeHost) bool { return p.Selects(h.labels) })
}

// at is a finding of check c about field of policy p; line is used when
// the field cannot be found in the file again.
func (a *auditor) at(c check, p *Policy, field string, line int, format string, args ...any) *Finding {
	line = a.lines.line(p.Source.File, p.Source.Doc, field, line)
	return c.finding(p.Source.File, p.Source.Doc, line, field, format, args...)
}

func (a *auditor) add(f *Finding) { a.out = append(a.out, f) }

// duplicates warns about every policy whose namespace/name an earlier one
// already has. Both are enforced (allowances are a union), but audit
// records, metrics and check name the policy that allowed a flow by that
// name, and would not say which of the two did (Req 10.2.2). A warning, not
// an error: refusing the set would leave the host unfiltered over a naming
// slip that changes no verdict.
func (a *auditor) duplicates() {
	first := make(map[string]*Policy, len(a.set.Policies))
	for _, p := range a.set.Policies {
		k := p.Key()
		q, dup := first[k]
		if !dup {
			first[k] = p
			continue
		}
		a.add(a.at(checkDuplicateName, p, "metadata.name", p.nameLine,
			"policy %q is already defined in %s:%d (document %d); both are enforced, but audit records, "+
				"metrics and check will not say which of the two allowed a flow; rename one",
			k, q.Source.File, q.nameLine, q.Source.Doc))
	}
}

// justified reports whether p records why it needs what it opens.
func justified(p *Policy) bool {
	return strings.TrimSpace(p.Metadata.Annotations[JustificationAnnotation]) != ""
}

func (a *auditor) policy(p *Policy) {
	cde := a.isCDE(p)
	if cde && !hasPCIDSSAnnotation(p) {
		line := a.lines.line(p.Source.File, p.Source.Doc, "metadata", p.Source.Line)
		a.add(a.at(checkAnnotation, p, "metadata.annotations", line,
			"CDE policy has no %s annotation; add one naming the requirement it implements, "+
				"e.g. pci-dss/requirement: \"1.3.1\", so the scope documentation can cite this segmentation control",
			pciDSSAnnotationPrefix))
	}
	if v, ok := p.Metadata.Annotations[RequirementAnnotation]; cde && ok {
		field, fix := "metadata.annotations."+RequirementAnnotation, `list the requirements this policy implements by number, comma-separated, e.g. "1.3.1, 1.3.2"`
		switch reqs, bad := Requirements(v); {
		case bad != "":
			a.add(a.at(checkAnnotation, p, field, p.Source.Line, "%s %q: %q is not a PCI-DSS requirement number; %s", RequirementAnnotation, v, bad, fix))
		case len(reqs) == 0:
			a.add(a.at(checkAnnotation, p, field, p.Source.Line, "%s names no requirement; %s", RequirementAnnotation, fix))
		}
	}
	for _, d := range directions {
		rules := p.Rules(d)
		for i := range rules {
			path := fmt.Sprintf("spec.%s[%d]", d, i)
			if cde {
				a.everyPort(p, path, &rules[i])
			}
			if !justified(p) {
				a.insecure(p, path, &rules[i])
			}
		}
	}
}

func hasPCIDSSAnnotation(p *Policy) bool {
	for k := range p.Metadata.Annotations {
		if strings.HasPrefix(k, pciDSSAnnotationPrefix) {
			return true
		}
	}
	return false
}

// portProtocols are the protocols a port entry can name, in the order the
// checks report them.
var portProtocols = [...]Protocol{TCP, UDP, SCTP}

// portRange is an inclusive range of ports, within 1-65535.
type portRange struct{ lo, hi uint16 }

var everyPort = portRange{1, 65535}

func (r portRange) String() string {
	if r.lo == r.hi {
		return fmt.Sprint(r.lo)
	}
	return fmt.Sprintf("%d-%d", r.lo, r.hi)
}

// entryRange is the ports a port entry admits.
func entryRange(p Port) portRange {
	if p.Port == 0 {
		return everyPort
	}
	return portRange{p.Port, max(p.EndPort, p.Port)}
}

// mergePorts sorts ranges and joins the overlapping and adjacent ones.
func mergePorts(rs []portRange) []portRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(x, y portRange) int { return cmp.Compare(x.lo, y.lo) })
	var out []portRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.lo) <= uint32(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// rulePorts is what a rule admits: every port of every protocol when it
// lists no ports, otherwise per protocol of portProtocols the merged ranges.
func rulePorts(r *Rule) (anyProto bool, ports [len(portProtocols)][]portRange) {
	if len(r.Ports) == 0 {
		for i := range ports {
			ports[i] = []portRange{everyPort}
		}
		return true, ports
	}
	for i, proto := range portProtocols {
		var rs []portRange
		for _, p := range r.Ports {
			if p.Protocol == proto {
				rs = append(rs, entryRange(p))
			}
		}
		ports[i] = mergePorts(rs)
	}
	return false, ports
}

// everyPort reports a CDE rule that allows every port of a protocol: an
// identified service has a port (Req 1.2.5).
func (a *auditor) everyPort(p *Policy, path string, r *Rule) {
	const next = "list only the ports the service needs"
	anyProto, ports := rulePorts(r)
	if anyProto {
		a.add(a.at(checkEveryPort, p, path, r.Line,
			"CDE rule allows every port of every protocol because it lists no ports; %s", next))
		return
	}
	for i, proto := range portProtocols {
		if len(ports[i]) != 1 || ports[i][0] != everyPort {
			continue
		}
		j := slices.IndexFunc(r.Ports, func(e Port) bool {
			return e.Protocol == proto && entryRange(e) == everyPort
		})
		switch {
		case j >= 0 && r.Ports[j].Port == 0:
			a.add(a.at(checkEveryPort, p, fmt.Sprintf("%s.ports[%d]", path, j), r.Line,
				"CDE rule allows every %s port because this entry has no port; %s", proto, next))
		case j >= 0:
			a.add(a.at(checkEveryPort, p, fmt.Sprintf("%s.ports[%d]", path, j), r.Line,
				"CDE rule allows every %s port: port 1 to endPort 65535 is all of them; %s", proto, next))
		default:
			a.add(a.at(checkEveryPort, p, path+".ports", r.Line,
				"CDE rule allows every %s port: its %s entries together cover 1-65535; %s", proto, proto, next))
		}
	}
}

// insecureService is a service that sends credentials or data in clear
// text (Req 1.2.6), by protocol and ports, with what to use instead.
type insecureService struct {
	name   string
	proto  Protocol
	ports  portRange
	secure string
}

// insecureServices is the list insecure-service knows (see "Findings" in
// the package documentation for what is left out and why).
var insecureServices = []insecureService{
	{"FTP", TCP, portRange{20, 21}, "SFTP or FTPS"},
	{"telnet", TCP, portRange{23, 23}, "SSH"},
	{"TFTP", UDP, portRange{69, 69}, "SFTP"},
	{"POP3", TCP, portRange{110, 110}, "POP3S (995)"},
	{"IMAP", TCP, portRange{143, 143}, "IMAPS (993)"},
	{"SNMP v1/v2c", UDP, portRange{161, 162}, "SNMPv3 with authPriv"},
	{"rexec, rlogin and rsh", TCP, portRange{512, 514}, "SSH"},
}

// insecure reports every port entry (or a rule without ports) admitting a
// port of an insecure service, in a policy with no justification.
func (a *auditor) insecure(p *Policy, path string, r *Rule) {
	if len(r.Ports) == 0 {
		if hit := insecureIn(nil); len(hit) > 0 {
			a.add(a.at(checkInsecure, p, path, r.Line, "%s",
				insecureMessage("rule lists no ports, so it admits every port, including", hit)))
		}
		return
	}
	for j, e := range r.Ports {
		if hit := insecureIn(&e); len(hit) > 0 {
			what := fmt.Sprintf("%s %s admits", e.Protocol, entryRange(e))
			if e.Port == 0 {
				what = fmt.Sprintf("every %s port is admitted, including", e.Protocol)
			}
			field := fmt.Sprintf("%s.ports[%d]", path, j)
			a.add(a.at(checkInsecure, p, field, r.Line, "%s", insecureMessage(what, hit)))
		}
	}
}

// insecureIn lists the insecure services a port entry admits; nil stands
// for every port of every protocol.
func insecureIn(e *Port) []insecureService {
	var out []insecureService
	for _, s := range insecureServices {
		if e == nil || e.Protocol == s.proto && entryRange(*e).lo <= s.ports.hi && s.ports.lo <= entryRange(*e).hi {
			out = append(out, s)
		}
	}
	return out
}

func insecureMessage(what string, hit []insecureService) string {
	names := make([]string, len(hit))
	alts := make([]string, len(hit))
	for i, s := range hit {
		names[i] = fmt.Sprintf("%s (%s %s)", s.name, s.proto, s.ports)
		alts[i] = s.name + ": " + s.secure
	}
	const record = "or record the measures that secure it in a " + JustificationAnnotation + " annotation"
	if len(hit) == 1 {
		return fmt.Sprintf("%s %s, an insecure cleartext service; use %s instead, %s",
			what, names[0], hit[0].secure, record)
	}
	return fmt.Sprintf("%s %s, insecure cleartext services; use their secure alternatives (%s), %s",
		what, strings.Join(names, ", "), strings.Join(alts, "; "), record)
}

// admitsPort reports whether rule r admits some peer on this protocol and
// port; a rule's peers are never empty.
func admitsPort(r *Rule, proto Protocol, port uint16) bool {
	if len(r.Ports) == 0 {
		return true
	}
	for _, e := range r.Ports {
		if rg := entryRange(e); e.Protocol == proto && rg.lo <= port && port <= rg.hi {
			return true
		}
	}
	return false
}

// ungoverned warns, for a CDE host inferred from a selector, about each
// direction no applying policy governs; it points at that selector.
// When the selector also selects the CDE host --labels names and that host
// leaves the direction ungoverned too, HostWarnings has said so: a host
// with fewer labels gets no more policies, so it is the same gap, and one
// finding is made of it.
func (a *auditor) ungoverned(h cdeHost) {
	var reported [2]bool // by HostWarnings
	if a.labels["pci-env"] == "cde" && h.selector.Selects(a.labels) {
		named := a.set.Governed(a.labels)
		for _, d := range directions {
			reported[d] = !named[d]
		}
	}
	gov := a.set.Governed(h.labels)
	for _, d := range directions {
		if gov[d] || reported[d] {
			continue
		}
		c := byDirection(d, checkUngovernedIngress, checkUngovernedEgress)
		a.add(a.at(c, h.selector, "spec.podSelector", h.selector.Source.Line,
			"%s of a host labelled only %s, which this selector selects, is governed by no applying policy "+
				"and is not filtered (PCI-DSS Req %s); list %s in the policyTypes of this or another policy "+
				"selecting such a host, with rules for the %s traffic it needs",
			d, FormatLabels(h.labels), c.requirement, policyTypeName(d), d))
	}
}

// remoteAdministration warns when a CDE host's governed ingress admits SSH
// from no address at all: whoever applies the set would lock themselves
// out, and a host nobody can reach over SSH gets administered some less
// controlled way. Hosts that would be cut at the same place share one
// finding, which names the first of them (the named host, if it is one).
func (a *auditor) remoteAdministration(h cdeHost) {
	var first *Policy
	for _, p := range a.set.Applying(h.labels) {
		if !p.Governs(Ingress) {
			continue
		}
		if first == nil {
			first = p
		}
		for i := range p.Spec.Ingress {
			if admitsPort(&p.Spec.Ingress[i], TCP, 22) {
				return
			}
		}
	}
	if first == nil {
		return // ungoverned: its own warning says so
	}
	key := checkSSH.name + "\x00" + first.Key()
	if a.seen[key] {
		return
	}
	a.seen[key] = true
	host := "labelled " + FormatLabels(h.labels)
	if !h.named {
		host = "labelled only " + FormatLabels(h.labels)
	}
	// Without an ingress key, point at policyTypes or spec: where the
	// rule would go.
	src := first.Source
	line := a.lines.line(src.File, src.Doc, "spec", src.Line)
	line = a.lines.line(src.File, src.Doc, "spec.policyTypes", line)
	a.add(a.at(checkSSH, first, "spec.ingress", line,
		"on a host %s ingress is governed and no rule admits TCP 22 from any address: "+
			"remote administration over SSH would be cut; add a rule admitting TCP 22 from the "+
			"management network or jump host, or ignore this if the host is administered another way",
		host))
}
