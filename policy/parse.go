package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads every policy document of one file. name appears in findings
// only. Empty documents are skipped but still counted, so "document N"
// matches the Nth "---" section a person counts in the file.
//
// It returns the valid policies and, when any document was invalid, an
// Errors listing every problem found; a YAML syntax error stops the file
// there, because the parser cannot resynchronise after it.
func Parse(name string, data []byte) ([]*Policy, error) {
	pols, errs, _ := parse(name, data)
	if len(errs) > 0 {
		return pols, Errors(errs)
	}
	return pols, nil
}

// parse also returns the number of non-empty documents, so Load can warn
// about a file that holds none.
func parse(file string, data []byte) ([]*Policy, []*Finding, int) {
	var (
		pols     []*Policy
		errs     []*Finding
		nonEmpty int
	)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for doc := 1; ; doc++ {
		var n yaml.Node
		err := decode(dec, &n)
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, syntaxFinding(file, doc, err))
			break
		}
		if len(n.Content) == 0 || isNull(n.Content[0]) {
			continue
		}
		nonEmpty++
		p := &docParser{file: file, doc: doc}
		if pol := p.policy(n.Content[0]); pol != nil && len(p.errs) == 0 {
			pols = append(pols, pol)
		}
		errs = append(errs, p.errs...)
	}
	return pols, errs, nonEmpty
}

// decode guards the worker against a panic inside the YAML library on
// hostile input: the file is rejected instead of the process dying. Our own
// walker is not covered, so FuzzParse still finds our bugs.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml decoder failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the messages of yaml v3's parser (parserc.go), as
// opposed to its scanner.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

type syntaxError struct {
	msg string
	err error
}

func (e *syntaxError) Error() string { return e.msg }
func (e *syntaxError) Unwrap() error { return e.err }

func syntaxFinding(file string, doc int, err error) *Finding {
	f := &Finding{File: file, Doc: doc, Requirement: checkSchema.requirement}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		f.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	// yaml v3 reports a parser error (unlike a scanner error) with libyaml's
	// 0-based line, or none for line 0; shift it so FILE:LINE points at the
	// line an editor shows. TestParseRejects pins this for the version in
	// go.mod.
	if yamlParserProblems[msg] {
		f.Line++
	}
	f.Err = &syntaxError{
		msg: "invalid YAML: " + msg + "; fix the syntax (the rest of the file was not read)",
		err: err,
	}
	return f
}

// docParser walks one document's node tree against the schema by hand
// rather than decoding into structs: that way every error carries its field
// path and line, all errors of a document are reported, and we know whether
// a key was present at all (egress absent vs "egress: []").
type docParser struct {
	file string
	doc  int
	errs []*Finding
}

func (p *docParser) errf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	// Quoted user text keeps a finding on one line; clipping keeps a
	// megabyte-long value from becoming a megabyte-long line.
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > maxShown {
			args[i] = s[:maxShown] + "..."
		}
	}
	p.errs = append(p.errs, &Finding{
		File: p.file, Doc: p.doc, Line: line, Field: field,
		Requirement: schemaCheck(field).requirement,
		Err:         fmt.Errorf(format, args...),
	})
}

// ownText is a message of ours passed as an argument: errf clips strings,
// which are the user's, and leaves it whole.
type ownText string

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int":
		return "a number"
	case "!!float":
		return "a fractional number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "empty"
	}
	return fmt.Sprintf("a value tagged %q", n.ShortTag())
}

// noAlias rejects YAML aliases everywhere: they would let one small
// document expand into a huge one, and a policy read by an auditor should
// spell out what it allows.
func (p *docParser) noAlias(n *yaml.Node, field string) bool {
	if n.Kind == yaml.AliasNode {
		p.errf(n, field, "YAML aliases (*%s) are not supported; "+
			"write the value out in full", strings.Trim(strconv.Quote(n.Value), `"`))
		return false
	}
	return true
}

const maxShown = 100

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_./-]+$`)

// join appends a key to a field path, quoting a key that is not plain so
// the path stays on one line and cannot be mistaken for another.
func join(path, key string) string {
	if !plainKeyRE.MatchString(key) || len(key) > maxShown {
		if len(key) > maxShown {
			key = key[:maxShown] + "..."
		}
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

type field struct {
	key, val *yaml.Node
}

// fields reads mapping n, allowing only the named keys. A null n is an
// empty mapping, as in Kubernetes. hints gives a better message than
// "unknown field" for keys people are likely to write by mistake. ok is
// false when n is not a mapping at all.
func (p *docParser) fields(n *yaml.Node, path string, hints map[string]string, allowed ...string) (map[string]field, bool) {
	out := make(map[string]field)
	if !p.noAlias(n, path) {
		return out, false
	}
	if isNull(n) {
		return out, true
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			p.errf(n, "", "a policy document must be a mapping with apiVersion, kind, metadata and spec, not %s; "+
				"write one policy per document, separated by ---", kindName(n))
		} else {
			p.errf(n, path, "must be a mapping, not %s; write key: value pairs under it", kindName(n))
		}
		return out, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := p.key(k, path)
		if !ok {
			continue
		}
		fpath := join(path, name)
		if prev, dup := out[name]; dup {
			p.errf(k, fpath, "field appears twice (first on line %d); keep one", prev.key.Line)
			continue
		}
		if !slices.Contains(allowed, name) {
			if h, ok := hints[name]; ok {
				p.errf(k, fpath, "%s", ownText(h))
			} else if s := suggest(name, allowed); s != "" {
				p.errf(k, fpath, "unknown field; "+
					"did you mean %q? (allowed here: %s)", s, strings.Join(allowed, ", "))
			} else {
				p.errf(k, fpath, "unknown field; remove it (allowed here: %s)", strings.Join(allowed, ", "))
			}
			continue
		}
		out[name] = field{k, v}
	}
	return out, true
}

// key returns a mapping key that must be a plain string.
func (p *docParser) key(k *yaml.Node, path string) (string, bool) {
	if !p.noAlias(k, path) {
		return "", false
	}
	if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
		p.errf(k, path, "key %q is %s; keys must be strings, quote it", k.Value, kindName(k))
		return "", false
	}
	return k.Value, true
}

// suggest returns the allowed name closest to a misspelt one, or "".
func suggest(name string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if strings.EqualFold(a, name) {
			return a
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(a)); d < bestD {
			best, bestD = a, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo of a field name, and keeps this cheap
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str reads a string scalar. Other scalars are refused rather than
// converted, so "1.3" and 1.3 or "true" and true never get confused.
func (p *docParser) str(n *yaml.Node, path string) (string, bool) {
	if !p.noAlias(n, path) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			p.errf(n, path, "must be a string, not %s; quote it: %q", kindName(n), n.Value)
		} else {
			p.errf(n, path, "must be a string, not %s", kindName(n))
		}
		return "", false
	}
	return n.Value, true
}

// list reads a sequence; null is an empty list.
func (p *docParser) list(n *yaml.Node, path string) ([]*yaml.Node, bool) {
	if !p.noAlias(n, path) {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "must be a list, not %s; start each element with \"- \"", kindName(n))
		return nil, false
	}
	return n.Content, true
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// required reports a missing field on the line of the mapping that lacks it.
func (p *docParser) required(f map[string]field, parent *yaml.Node, path, name, howto string) (field, bool) {
	v, ok := f[name]
	if !ok {
		p.errf(parent, join(path, name), "required; %s", howto)
	}
	return v, ok
}

func (p *docParser) policy(root *yaml.Node) *Policy {
	f, ok := p.fields(root, "", nil, "apiVersion", "kind", "metadata", "spec")
	if !ok {
		return nil
	}
	pol := &Policy{Source: Source{File: p.file, Doc: p.doc, Line: root.Line}}
	if v, ok := p.required(f, root, "", "apiVersion", `add "apiVersion: `+APIVersion+`"`); ok {
		if s, ok := p.str(v.val, "apiVersion"); ok {
			if s != APIVersion {
				p.errf(v.val, "apiVersion", "%q is not supported; use %q", s, APIVersion)
			}
			pol.APIVersion = s
		}
	}
	if v, ok := p.required(f, root, "", "kind", `add "kind: `+Kind+`"`); ok {
		if s, ok := p.str(v.val, "kind"); ok {
			if s != Kind {
				p.errf(v.val, "kind", "%q is not supported; use %q", s, Kind)
			}
			pol.Kind = s
		}
	}
	if v, ok := p.required(f, root, "", "metadata", "add metadata with at least a name"); ok {
		pol.Metadata, pol.nameLine = p.metadata(v.val)
	}
	if v, ok := p.required(f, root, "", "spec", "add a spec with at least podSelector: {}"); ok {
		pol.Spec = p.spec(v.val)
	}
	return pol
}

func (p *docParser) metadata(n *yaml.Node) (md Metadata, nameLine int) {
	f, ok := p.fields(n, "metadata", nil, "name", "namespace", "labels", "annotations")
	if !ok {
		return md, 0
	}
	if v, ok := p.required(f, n, "metadata", "name", "name the policy; "+
		"the name appears in the audit log and metrics"); ok {
		if s, ok := p.str(v.val, "metadata.name"); ok {
			if err := checkName(s); err != nil {
				p.errf(v.val, "metadata.name", "%w", err)
			}
			md.Name, nameLine = s, v.val.Line
		}
	}
	if v, ok := f["namespace"]; ok {
		if s, ok := p.str(v.val, "metadata.namespace"); ok {
			if err := checkNamespace(s); err != nil {
				p.errf(v.val, "metadata.namespace", "%w", err)
			}
			md.Namespace = s
		}
	}
	if v, ok := f["labels"]; ok {
		md.Labels = p.labelMap(v.val, "metadata.labels")
	}
	if v, ok := f["annotations"]; ok {
		md.Annotations = p.stringMap(v.val, "metadata.annotations", func(k string) error {
			for _, r := range k {
				if r < 0x20 || r == 0x7f {
					return errors.New("key contains a control character; use printable characters")
				}
			}
			return nil
		}, nil)
	}
	return md, nameLine
}

func (p *docParser) labelMap(n *yaml.Node, path string) map[string]string {
	return p.stringMap(n, path, checkLabelKey, checkLabelValue)
}

// stringMap reads a mapping of strings to strings with checks on both.
func (p *docParser) stringMap(n *yaml.Node, path string, checkKey, checkVal func(string) error) map[string]string {
	if !p.noAlias(n, path) || isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "must be a mapping of strings, not %s; write key: value pairs under it", kindName(n))
		return nil
	}
	out := make(map[string]string, len(n.Content)/2)
	lines := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, ok := p.key(k, path)
		if !ok {
			continue
		}
		fpath := join(path, key)
		if line, dup := lines[key]; dup {
			p.errf(k, fpath, "key appears twice (first on line %d); keep one", line)
			continue
		}
		lines[key] = k.Line
		if key == "" {
			p.errf(k, fpath, "key is empty; name it")
			continue
		}
		if checkKey != nil {
			if err := checkKey(key); err != nil {
				p.errf(k, fpath, "%w", err)
				continue
			}
		}
		val, ok := p.str(v, fpath)
		if !ok {
			continue
		}
		if checkVal != nil {
			if err := checkVal(val); err != nil {
				p.errf(v, fpath, "%w", err)
				continue
			}
		}
		out[key] = val
	}
	return out
}

func (p *docParser) spec(n *yaml.Node) Spec {
	var s Spec
	f, ok := p.fields(n, "spec", nil, "podSelector", "policyTypes", "ingress", "egress")
	if !ok {
		return s
	}
	if v, ok := p.required(f, n, "spec", "podSelector", `write "podSelector: {}" to select every host`); ok {
		s.PodSelector = p.selector(v.val, "spec.podSelector")
	}
	if v, ok := f["policyTypes"]; ok {
		s.PolicyTypes = p.policyTypes(v.val, "spec.policyTypes")
	}
	if v, ok := f["ingress"]; ok {
		s.HasIngress = true
		s.Ingress = p.rules(v.val, "spec.ingress", Ingress)
	}
	if v, ok := f["egress"]; ok {
		s.HasEgress = true
		s.Egress = p.rules(v.val, "spec.egress", Egress)
	}
	// Kubernetes silently ignores rules of a direction policyTypes leaves
	// out. Here they would be allowances nobody enforces, which an auditor
	// reading the file would take for real: refuse them.
	if len(s.PolicyTypes) > 0 {
		for _, d := range directions {
			name := policyTypeName(d)
			if len(s.rules(d)) > 0 && !slices.Contains(s.PolicyTypes, d) {
				key := "spec." + d.String()
				p.errf(f[d.String()].key, key, "%s rules have no effect because policyTypes does not list %s; "+
					"add %s to policyTypes or remove %s", d, name, name, key)
			}
		}
	}
	return s
}

func (s *Spec) rules(d Direction) []Rule {
	if d == Egress {
		return s.Egress
	}
	return s.Ingress
}

// policyTypeName is d as spec.policyTypes spells it.
func policyTypeName(d Direction) string {
	if d == Egress {
		return "Egress"
	}
	return "Ingress"
}

func (p *docParser) selector(n *yaml.Node, path string) LabelSelector {
	var sel LabelSelector
	f, ok := p.fields(n, path, map[string]string{
		"matchExpressions": "matchExpressions is not supported; list the required labels under matchLabels",
	}, "matchLabels")
	if !ok {
		return sel
	}
	if v, ok := f["matchLabels"]; ok {
		sel.MatchLabels = p.labelMap(v.val, join(path, "matchLabels"))
	}
	return sel
}

func (p *docParser) policyTypes(n *yaml.Node, path string) []Direction {
	items, ok := p.list(n, path)
	if !ok {
		return nil
	}
	var out []Direction
	for i, it := range items {
		ipath := index(path, i)
		s, ok := p.str(it, ipath)
		if !ok {
			continue
		}
		var d Direction
		switch s {
		case "Ingress":
			d = Ingress
		case "Egress":
			d = Egress
		default:
			p.errf(it, ipath, "policy type %q is not supported; use Ingress or Egress (exact case)", s)
			continue
		}
		if slices.Contains(out, d) {
			p.errf(it, ipath, "%s is listed twice; list it once", s)
			continue
		}
		out = append(out, d)
	}
	return out
}

func (p *docParser) rules(n *yaml.Node, path string, d Direction) []Rule {
	items, ok := p.list(n, path)
	if !ok {
		return nil
	}
	peerKey, otherKey := "from", "to"
	if d == Egress {
		peerKey, otherKey = "to", "from"
	}
	hints := map[string]string{
		otherKey: fmt.Sprintf("%s rules name their peers under %q, not %q", d, peerKey, otherKey),
	}
	out := make([]Rule, 0, len(items))
	for i, it := range items {
		ipath := index(path, i)
		if isNull(it) {
			// A bare "-" is more likely a slip than a wish to allow
			// everything, so it must be written out.
			p.errf(it, ipath, "empty rule; "+
				"write {} for a rule that allows every peer and port, or remove the dash")
			continue
		}
		f, ok := p.fields(it, ipath, hints, peerKey, "ports")
		if !ok {
			continue
		}
		r := Rule{Line: it.Line}
		if v, ok := f[peerKey]; ok {
			r.Peers = p.peers(v.val, join(ipath, peerKey))
		}
		if v, ok := f["ports"]; ok {
			r.Ports = p.ports(v.val, join(ipath, "ports"))
		}
		out = append(out, r)
	}
	return out
}

func (p *docParser) peers(n *yaml.Node, path string) []Peer {
	items, ok := p.list(n, path)
	if !ok {
		return nil
	}
	var out []Peer
	for i, it := range items {
		ipath := index(path, i)
		if isNull(it) {
			p.errf(it, ipath, "empty peer; give it an ipBlock with a cidr, or remove the dash")
			continue
		}
		// Pod and namespace selectors are Kubernetes fields, known and
		// refused with why; ipBlock is all a peer may be here.
		hints := map[string]string{}
		bad := false
		for _, sel := range []string{"podSelector", "namespaceSelector"} {
			hints[sel] = sel + " peers select Kubernetes pods, which a host does not have; " +
				"describe the peer by its addresses with ipBlock: {cidr: ...}"
			for j := 0; it.Kind == yaml.MappingNode && j < len(it.Content); j += 2 {
				bad = bad || it.Content[j].Value == sel
			}
		}
		f, ok := p.fields(it, ipath, hints, "ipBlock")
		if !ok {
			continue
		}
		v, ok := f["ipBlock"]
		if !ok {
			if !bad {
				p.errf(it, join(ipath, "ipBlock"), "required; "+
					"describe the peer by its addresses with ipBlock: {cidr: ...}")
			}
			continue
		}
		if peer, ok := p.ipBlock(v.val, join(ipath, "ipBlock")); ok && !bad {
			out = append(out, peer)
		}
	}
	return out
}

func (p *docParser) ipBlock(n *yaml.Node, path string) (Peer, bool) {
	var peer Peer
	n0 := len(p.errs)
	f, ok := p.fields(n, path, nil, "cidr", "except")
	if !ok {
		return peer, false
	}
	v, ok := p.required(f, n, path, "cidr", `give the peer's addresses, e.g. "cidr: 10.0.0.0/8"`)
	if !ok {
		return peer, false
	}
	cpath := join(path, "cidr")
	s, ok := p.str(v.val, cpath)
	if !ok {
		return peer, false
	}
	cidr, err := parsePrefix("cidr", s)
	if err != nil {
		p.errf(v.val, cpath, "%w", err)
		return peer, false
	}
	peer.CIDR = cidr
	if v, ok := f["except"]; ok {
		epath := join(path, "except")
		items, _ := p.list(v.val, epath)
		for i, it := range items {
			ipath := index(epath, i)
			s, ok := p.str(it, ipath)
			if !ok {
				continue
			}
			e, err := parsePrefix("except", s)
			if err != nil {
				p.errf(it, ipath, "%w", err)
				continue
			}
			if err := checkExcept(cidr, e); err != nil {
				p.errf(it, ipath, "%w", err)
				continue
			}
			peer.Except = append(peer.Except, e)
		}
	}
	return peer, len(p.errs) == n0
}

// parsePrefix accepts only a canonical, masked prefix: a cidr with host bits
// set is usually a typo for a different network, and guessing which one
// the author meant is not ours to do.
func parsePrefix(what, s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			return netip.Prefix{}, fmt.Errorf("%s %q has no prefix length; "+
				"use %q for that one address", what, s, netip.PrefixFrom(a, a.BitLen()))
		}
		return netip.Prefix{}, fmt.Errorf("%s %q is not a prefix; "+
			"write ADDRESS/BITS such as \"10.0.0.0/8\" or \"2001:db8::/32\"", what, s)
	}
	pfx, err := netip.ParsePrefix(s)
	if a, bits, ok := prefixLengthTooLong(s); err != nil && ok {
		return netip.Prefix{}, fmt.Errorf("%s %q has prefix length %d, but an %s address has %d bits; "+
			"use a length of 0-%d", what, s, bits, family(netip.PrefixFrom(a, 0)), a.BitLen(), a.BitLen())
	}
	if err != nil {
		// netip names its own calls ("netip.ParsePrefix(...): ParseAddr(...):
		// why"); the author needs only the why.
		why := err.Error()
		if i := strings.LastIndex(why, "): "); i >= 0 {
			why = why[i+3:]
		}
		return netip.Prefix{}, fmt.Errorf("%s %q is malformed (%s); "+
			"write ADDRESS/BITS such as \"10.0.0.0/8\" or \"2001:db8::/32\"", what, s, why)
	}
	// Masked keeps an IPv4-mapped IPv6 prefix in IPv6 form; it is never
	// converted to IPv4, so ::ffff:0:0/96 does not admit IPv4 traffic.
	if m := pfx.Masked(); m != pfx {
		return netip.Prefix{}, fmt.Errorf("%s %q has host bits set; use %q", what, s, m.String())
	}
	return pfx, nil
}

// prefixLengthTooLong reports a well-formed address with a decimal length
// beyond its family's bits, such as 10.0.0.0/33, so the message can give
// the lengths allowed.
func prefixLengthTooLong(s string) (netip.Addr, int, bool) {
	addr, length, _ := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || !decimalRE.MatchString(length) {
		return netip.Addr{}, 0, false
	}
	bits, _ := strconv.Atoi(length)
	return a, bits, bits > a.BitLen()
}

func checkExcept(cidr, e netip.Prefix) error {
	if e.Addr().Is4() != cidr.Addr().Is4() {
		return fmt.Errorf("except %q is %s but cidr %q is %s; "+
			"an except must be of its cidr's family, so use a separate peer for the other family", e, family(e), cidr, family(cidr))
	}
	if e == cidr {
		return fmt.Errorf("except %q equals its cidr, which would leave the peer empty; "+
			"remove the peer instead", e)
	}
	if e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()) {
		return fmt.Errorf("except %q is not inside cidr %q; "+
			"an except must be a strict subset of its cidr, fix one or the other", e, cidr)
	}
	return nil
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func (p *docParser) ports(n *yaml.Node, path string) []Port {
	items, ok := p.list(n, path)
	if !ok {
		return nil
	}
	var out []Port
	for i, it := range items {
		ipath := index(path, i)
		if isNull(it) {
			p.errf(it, ipath, "empty port; give a protocol and/or a port, or remove the dash")
			continue
		}
		n0 := len(p.errs)
		f, ok := p.fields(it, ipath, nil, "protocol", "port", "endPort")
		if !ok {
			continue
		}
		port := Port{Protocol: TCP}
		if v, ok := f["protocol"]; ok {
			if proto, ok := p.protocol(v.val, join(ipath, "protocol")); ok {
				port.Protocol = proto
			}
		}
		if v, ok := f["port"]; ok {
			port.Port, _ = p.portNumber(v.val, join(ipath, "port"), true)
		}
		if v, ok := f["endPort"]; ok {
			epath := join(ipath, "endPort")
			end, ok := p.portNumber(v.val, epath, false)
			_, hasPort := f["port"]
			switch {
			case !ok:
			case !hasPort:
				p.errf(v.key, epath, "endPort needs port; add \"port: N\" as the start of the range")
			case port.Port != 0 && end < port.Port:
				p.errf(v.val, epath, "endPort %d is below port %d; endPort must be >= port", end, port.Port)
			default:
				port.EndPort = end
			}
		}
		if len(p.errs) == n0 {
			out = append(out, port)
		}
	}
	return out
}

// protocol reads a port entry's protocol, which must be spelt exactly as
// Kubernetes spells it. A number is refused with the names to use instead
// (quoting it would only lead to the next refusal), and ICMP with how ICMP
// is judged, since a reader asking for it has a real need.
func (p *docParser) protocol(n *yaml.Node, path string) (Protocol, bool) {
	if !p.noAlias(n, path) {
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		p.errf(n, path, "protocol must be TCP, UDP or SCTP, not %s; use one of those names", kindName(n))
		return 0, false
	}
	switch s := n.Value; s {
	case "TCP":
		return TCP, true
	case "UDP":
		return UDP, true
	case "SCTP":
		return SCTP, true
	case "ICMP", "ICMPv6", "icmp", "icmpv6", "ICMPV6":
		p.errf(n, path, "protocol %q is not supported; use TCP, UDP or SCTP (exact case): "+
			"ICMP errors about allowed flows pass on their own, and other ICMP is allowed only "+
			"by a rule without ports", s)
	default:
		p.errf(n, path, "protocol %q is not supported; use TCP, UDP or SCTP (exact case)", s)
	}
	return 0, false
}

var decimalRE = regexp.MustCompile(`^[1-9][0-9]{0,5}$|^0$`)

// portNumber reads a port as a plain decimal number. YAML would also read
// 0x50 or 0o120, and 010 as octal; we refuse those so a port means what it
// looks like.
func (p *docParser) portNumber(n *yaml.Node, path string, named bool) (uint16, bool) {
	if !p.noAlias(n, path) {
		return 0, false
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && named {
		p.errf(n, path, "named port %q is not supported: a host has no named container ports; "+
			"use the port number", n.Value)
		return 0, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.errf(n, path, "must be a port number, not %s; write a whole number 1-65535", kindName(n))
		return 0, false
	}
	if !decimalRE.MatchString(n.Value) {
		p.errf(n, path, "port %q is not written in decimal; "+
			"write it as a plain decimal number 1-65535", n.Value)
		return 0, false
	}
	v, _ := strconv.Atoi(n.Value)
	if v < 1 || v > 65535 {
		p.errf(n, path, "port %d is out of range; use 1-65535, or leave port out for every port", v)
		return 0, false
	}
	return uint16(v), true
}
