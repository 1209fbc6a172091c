// Package report builds the compliance evidence `pci-segment report` writes:
// one document, HTML or JSON, from the policy files and, when enforcement
// runs, the live state, for an assessor to file. Every figure comes from
// a source named in it (the files, the kernel's maps and /proc through
// package status, the audit log); a section without data says why, and
// nothing is filled in to look complete.
//
// Known gap: the review of what has not matched (Req 1.2.7) is per policy,
// since the datapath counts the flows each policy lets in; a rule's own
// count would need the rule's index carried in the port map's value and a
// counter per rule.
package report

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/status"
)

// SchemaVersion is the JSON document's version (schema.json).
const SchemaVersion = 1

// Options say what to report on.
type Options struct {
	Files    []string // -f: the policy files, directories, globs
	Labels   string   // the host's labels; "" for none
	PinDir   string   // the enforcing instance's --pin-dir
	StateDir string   // its --state-dir; "" for the running instance's (status finds it)
	AuditDir string   // its --audit-dir; "" for the running instance's
	Key      string   // audit first key file or directory; "" to check order and links only
	Version  string   // the product version
	// Now and Status are the moment and the live state (status.Gather
	// when nil); the tests give their own.
	Now    time.Time
	Status *status.Status
}

// Report is the document.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	Host          string    `json:"host"`
	Time          time.Time `json:"time"`
	Version       string    `json:"version"`
	Labels        string    `json:"labels"`

	PolicySet PolicySet `json:"policy_set"`
	Policies  []Policy  `json:"policies"`
	// Findings not under a listed policy: documents that do not parse
	// (they are not policies yet), the set, the host.
	Findings   []Finding   `json:"findings"`
	Allowances Allowances  `json:"allowances"`
	Live       Live        `json:"live"`
	Unmatched  Unmatched   `json:"unmatched"`
	Overrides  Overrides   `json:"overrides"`
	Privilege  Privilege   `json:"privilege"`
	Audit      AuditReport `json:"audit"`
}

// PolicySet is what was read.
type PolicySet struct {
	Files  []File `json:"files"`
	SHA256 string `json:"sha256"` // empty when the set does not load; Why says so
	Valid  bool   `json:"valid"`
	Why    string `json:"why,omitempty"`
}

// File is one policy file.
type File struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Policy is one policy and what its checks found.
type Policy struct {
	Key          string    `json:"key"`
	File         string    `json:"file"`
	Requirements []string  `json:"requirements"` // pci-dss/requirement
	Description  string    `json:"description"`  // pci-dss/description, or why there is none
	Applies      bool      `json:"applies"`      // it selects a host with Labels
	Governs      []string  `json:"governs"`      // ingress, egress
	Findings     []Finding `json:"findings"`
}

// Finding is one validation finding.
type Finding struct {
	Level       string `json:"level"` // error or warning
	Requirement string `json:"requirement"`
	Where       string `json:"where"` // file:line and field
	Message     string `json:"message"`
}

// Allowances are what the policies applying to the host allow.
type Allowances struct {
	Rows []Allowance `json:"rows"`
	// Ungoverned directions allow everything: no policy filters them.
	Ungoverned []string `json:"ungoverned"`
	Why        string   `json:"why,omitempty"` // when there are no rows
}

// Allowance is one row: a rule's peer and port entry, and the policy the
// reference evaluator names as deciding a packet it admits.
type Allowance struct {
	Direction string `json:"direction"`
	Peer      string `json:"peer"`
	Protocol  string `json:"protocol"`
	Ports     string `json:"ports"`
	Policy    string `json:"policy"`   // the rule's own policy
	Deciding  string `json:"deciding"` // the policy the evaluator names
}

// Live is the enforcement running now.
type Live struct {
	Running bool   `json:"running"`
	Why     string `json:"why,omitempty"` // when not running, or what could not be read
	Mode    string `json:"mode,omitempty"`
	// Governed are the directions a policy in force governs; null when
	// unread.
	Governed []string `json:"governed"`
	// Generation and SetSHA256 are in force; MatchesFiles compares the
	// hash with the files'.
	Generation   uint64            `json:"generation"`
	SetSHA256    string            `json:"set_sha256"`
	MatchesFiles bool              `json:"matches_files"`
	Links        []status.Link     `json:"links"`
	Counters     *status.Counters  `json:"counters"`
	Conntrack    *status.Conntrack `json:"conntrack"`
}

// Unfiltered reports that the half in force was read and governs neither
// direction: every packet passes.
func (l Live) Unfiltered() bool { return l.Governed != nil && len(l.Governed) == 0 }

// Unmatched are the policies in force whose rules let no flow in during
// the window (PCI-DSS Req 1.2.7's review of rules no longer needed).
type Unmatched struct {
	// Window is since the set in force was applied (its counters start
	// then); From is that time when the audit log records it.
	Window   string   `json:"window"`
	From     string   `json:"from,omitempty"`
	Policies []string `json:"policies"`
	Matched  []Match  `json:"matched"`
	Why      string   `json:"why,omitempty"` // when it cannot be said
}

// Match is a policy that let flows in during the window.
type Match struct {
	Policy  string `json:"policy"`
	Packets uint64 `json:"packets"`
	LastHit string `json:"last_hit"`
}

// Overrides are the development overrides in effect.
type Overrides struct {
	InEffect []Override `json:"in_effect"`
	Why      string     `json:"why,omitempty"` // when they could not be read
}

// Override is one override, which production must not have.
type Override struct {
	Name       string `json:"name"`
	Value      string `json:"value"`
	Source     string `json:"source"`
	Production string `json:"production"`
}

// Privilege is the split as status reads it.
type Privilege struct {
	Loader   *status.Process  `json:"loader"`
	Worker   *status.Process  `json:"worker"`
	Landlock *status.Landlock `json:"landlock"`
	Why      string           `json:"why,omitempty"`
	Findings []string         `json:"findings"`
}

// AuditReport is the audit log's span and verification.
type AuditReport struct {
	Dir     string `json:"dir"`
	Records int    `json:"records"`
	First   string `json:"first"`
	Last    string `json:"last"`
	Files   int    `json:"files"`
	Chains  int    `json:"chains"`
	// Result is intact, broken or not verified (Why says why).
	Result string `json:"result"`
	Keyed  bool   `json:"keyed"` // MACs checked with the first keys
	Detail string `json:"detail"`
}

// Build gathers the report.
func Build(o Options) *Report {
	now := o.Now
	if now.IsZero() {
		now = time.Now().UTC()
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown (" + err.Error() + ")"
	}
	r := &Report{SchemaVersion: SchemaVersion, Host: host, Time: now, Version: o.Version, Labels: o.Labels,
		Policies: []Policy{}, Findings: []Finding{}}
	labels, lerr := policy.ParseLabels(o.Labels)
	res := policy.Validate(o.Files, labels)
	for _, f := range res.Files {
		r.PolicySet.Files = append(r.PolicySet.Files, File{Path: f.Path, SHA256: fmt.Sprintf("%x", f.SHA256)})
	}
	if r.PolicySet.Files == nil {
		r.PolicySet.Files = []File{}
	}
	// An invalid set is listed too, with its findings; it is never
	// taken for what enforce would apply (res.Set is nil then).
	set := res.Parsed
	r.PolicySet.Valid = res.Valid() && lerr == nil
	switch {
	case lerr != nil:
		r.PolicySet.Why = "--labels: " + lerr.Error()
	case !res.Valid():
		r.PolicySet.Why = fmt.Sprintf("the set has %d errors (below): enforce refuses it", len(res.Errors))
	}
	if res.Set != nil {
		r.PolicySet.SHA256 = res.Set.HashHex()
	}
	r.Policies, r.Findings = policies(set, labels, append(res.Errors, res.Warnings...))
	r.Allowances = allowances(res.Set, labels, r.PolicySet)

	st := o.Status
	if st == nil {
		st = status.Gather(status.Options{PinDir: o.PinDir, StateDir: o.StateDir})
	}
	r.Live = live(st, r.PolicySet.SHA256)
	r.Overrides = overrides(st)
	r.Privilege = Privilege{Loader: st.Loader, Worker: st.Worker, Landlock: st.Landlock, Findings: st.Findings}
	if st.Loader == nil && st.Worker == nil {
		r.Privilege.Why = "no pci-segment loader or worker runs for " + o.PinDir
	}
	if r.Privilege.Findings == nil {
		r.Privilege.Findings = []string{}
	}
	auditDir := cmp.Or(o.AuditDir, st.AuditDir, status.DefaultAuditDir)
	r.Audit = auditReport(auditDir, cmp.Or(o.StateDir, st.StateDir), o.Key)
	r.Unmatched = unmatched(st, r.Live, auditDir)
	return r
}

func policies(set *policy.Set, labels map[string]string, fs []*policy.Finding) ([]Policy, []Finding) {
	out, rest := []Policy{}, []Finding{}
	byFile := map[string][]int{}
	if set != nil {
		for _, p := range set.Policies {
			// Those that are requirement numbers; a finding names the rest.
			reqs, _ := policy.Requirements(p.Metadata.Annotations[policy.RequirementAnnotation])
			reqs = append([]string{}, reqs...)
			desc := strings.TrimSpace(p.Metadata.Annotations["pci-dss/description"])
			if desc == "" {
				desc = "none given (annotation pci-dss/description)"
			}
			gov := []string{}
			for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
				if p.Governs(d) {
					gov = append(gov, d.String())
				}
			}
			byFile[p.Source.File] = append(byFile[p.Source.File], len(out))
			out = append(out, Policy{Key: p.Key(), File: p.Source.File, Requirements: reqs, Description: desc,
				Applies: labels != nil && p.Selects(labels), Governs: gov, Findings: []Finding{}})
		}
	}
	for _, f := range fs {
		where := f.File
		if f.Line > 0 {
			where += ":" + strconv.Itoa(f.Line)
		}
		if f.Field != "" {
			where += " " + f.Field
		}
		level := "error"
		if f.Warning {
			level = "warning"
		}
		msg := f.Error()
		if f.Err != nil {
			msg = f.Err.Error()
		}
		rf := Finding{Level: level, Requirement: cmp.Or(f.Requirement, "none"), Where: cmp.Or(strings.TrimSpace(where), "the host"), Message: msg}
		// A finding in a file of one policy is that policy's; in a file
		// of several, the document says which.
		idx := byFile[f.File]
		placed := false
		for _, i := range idx {
			if (f.Doc == 0 && len(idx) == 1) || (f.Doc > 0 && set.Policies[i].Source.Doc == f.Doc) {
				out[i].Findings = append(out[i].Findings, rf)
				placed = true
				break
			}
		}
		if !placed {
			rest = append(rest, rf)
		}
	}
	return out, rest
}

func allowances(set *policy.Set, labels map[string]string, ps PolicySet) Allowances {
	a := Allowances{Rows: []Allowance{}, Ungoverned: []string{}}
	switch {
	case set == nil:
		a.Why = "the policy set does not load or validate: " + ps.Why
		return a
	case labels == nil:
		a.Why = "no --labels given: which policies apply depends on the host's labels"
		return a
	}
	gov := set.Governed(labels)
	for i, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		if !gov[i] {
			a.Ungoverned = append(a.Ungoverned, d.String())
		}
	}
	for _, p := range set.Applying(labels) {
		for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
			if !p.Governs(d) {
				continue
			}
			for _, rule := range p.Rules(d) {
				peers := rule.Peers
				if len(peers) == 0 {
					peers = []policy.Peer{{}}
				}
				ports := rule.Ports
				if len(ports) == 0 {
					ports = []policy.Port{{}}
				}
				for _, pe := range peers {
					for _, po := range ports {
						row := Allowance{Direction: d.String(), Peer: peerText(pe), Protocol: "any", Ports: "any", Policy: p.Key()}
						proto, port := uint8(6), uint16(443)
						if po.Protocol != 0 {
							row.Protocol = po.Protocol.String()
							proto = uint8(po.Protocol)
							switch {
							case po.Port == 0:
								row.Ports = "all"
							case po.EndPort > 0:
								row.Ports = fmt.Sprintf("%d-%d", po.Port, po.EndPort)
							default:
								row.Ports = strconv.Itoa(int(po.Port))
							}
							port = po.Port
						}
						addr, ok := sample(pe)
						if !ok {
							row.Deciding = "none: every address of the peer is excepted"
						} else if v := set.Evaluate(labels, d, addr, proto, port); v.Allowed {
							row.Deciding = v.Policy
						} else {
							row.Deciding = "none: the evaluator denies " + addr.String()
						}
						a.Rows = append(a.Rows, row)
					}
				}
			}
		}
	}
	if len(a.Rows) == 0 {
		a.Why = "no applying policy allows anything: every governed direction is denied"
		if len(a.Ungoverned) == 2 {
			a.Why = "no policy applies to a host with these labels: nothing is filtered"
		}
	}
	return a
}

// sample is an address the peer admits, for the evaluator: its first
// address, or the first of its blocks not excepted. The excepts, sorted by
// their first address, are passed in one walk: prefixes are nested or
// disjoint, so one that starts above a sample that none before it covers
// cannot cover it either.
func sample(pe policy.Peer) (netip.Addr, bool) {
	if !pe.CIDR.IsValid() {
		return netip.MustParseAddr("192.0.2.1"), true
	}
	except := slices.Clone(pe.Except)
	slices.SortFunc(except, func(x, y netip.Prefix) int { return x.Masked().Addr().Compare(y.Masked().Addr()) })
	a := pe.CIDR.Addr()
	for _, e := range except {
		if e.Contains(a) {
			a = lastOf(e).Next() // past it; invalid past the last address
		}
	}
	return a, a.IsValid() && pe.CIDR.Contains(a)
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func peerText(pe policy.Peer) string {
	if !pe.CIDR.IsValid() {
		return "any address"
	}
	return pe.String()
}

func live(st *status.Status, filesHash string) Live {
	l := Live{Links: []status.Link{}}
	if st.Policy == nil || len(st.Links) == 0 {
		l.Why = "enforcement is not running: no pinned links or policy under " + st.PinDir
		return l
	}
	l.Running = true
	l.Mode, l.Governed, l.Generation, l.SetSHA256 = st.Policy.Mode, st.Policy.Governed, st.Policy.Generation, st.Policy.SetSHA256
	l.MatchesFiles = filesHash != "" && filesHash == st.Policy.SetSHA256
	l.Links, l.Counters, l.Conntrack = st.Links, st.Counters, st.Conntrack
	var why []string
	if st.Loader == nil {
		why = append(why, "the pinned links enforce, but no loader runs: the policy in force stays until one does or `detach`")
	}
	if len(st.Unavailable) > 0 {
		why = append(why, "not read: "+unavailable(st))
	}
	l.Why = strings.Join(why, "; ")
	return l
}

func unavailable(st *status.Status) string {
	var out []string
	for _, u := range st.Unavailable {
		out = append(out, u.What+": "+u.Reason)
	}
	return strings.Join(out, "; ")
}

func overrides(st *status.Status) Overrides {
	o := Overrides{InEffect: []Override{}}
	if st.Loader == nil {
		o.Why = "no loader runs: overrides are read from its environment and command line"
		return o
	}
	if st.Overrides == nil {
		o.Why = "the loader's environment could not be read (" + unavailable(st) + ")"
		return o
	}
	for _, ov := range st.Overrides {
		if ov.InEffect || ov.Invalid {
			o.InEffect = append(o.InEffect, Override{Name: ov.Name, Value: ov.Value, Source: ov.Source,
				Production: "not allowed in production (PCI-DSS Req 2.2.4)"})
		}
	}
	return o
}

func auditReport(dir, stateDir, key string) AuditReport {
	a := AuditReport{Dir: dir, Result: "not verified"}
	if dir == "" {
		a.Detail = "no audit directory given (--audit-dir)"
		return a
	}
	keys := map[string]audit.Key{}
	if key != "" {
		var err error
		if keys, err = audit.ReadKeys(key); err != nil {
			a.Detail = "the first keys could not be read: " + err.Error()
			return a
		}
	}
	var state *audit.State
	var stateErr error
	if stateDir != "" {
		st, err := audit.LoadState(stateDir)
		switch {
		case err == nil:
			state = &st
		case !errors.Is(err, audit.ErrNoState):
			stateErr = err
		}
	}
	rep, err := audit.Verify(dir, keys, state)
	a.Records, a.First, a.Last, a.Files, a.Chains, a.Keyed = rep.Records, rep.First, rep.Last, len(rep.Files), len(rep.Chains), rep.Keyed && key != ""
	var p *audit.Problem
	switch {
	case errors.As(err, &p):
		a.Result, a.Detail = "broken", p.Error()
	case err != nil:
		a.Detail = err.Error()
	case rep.Records == 0:
		a.Detail = "the audit directory holds no records"
	default:
		a.Detail = fmt.Sprintf("records %d to %d in order and linked", rep.FromSeq, rep.LastSeq)
		if a.Keyed {
			a.Result = "intact"
			a.Detail += ", every MAC checked with the chains' first keys"
		} else {
			// Without the keys an edited record does not show: the log
			// is not shown intact, only not visibly broken.
			a.Detail += "; MACs NOT checked: no first key given (--key), so an edited record would not show"
		}
		switch {
		case stateErr != nil:
			a.Detail += "; the worker's chain state could not be read (" + stateErr.Error() + "), so a truncated tail would not show"
		case state == nil:
			a.Detail += "; no worker chain state, so a truncated tail would not show"
		case rep.Anchored < rep.LastSeq:
			a.Detail += fmt.Sprintf("; the worker's state anchors the tail up to record %d: a cut of records %d to %d would not show until their epoch is sealed",
				rep.Anchored, rep.Anchored+1, rep.LastSeq)
		}
	}
	return a
}

func unmatched(st *status.Status, l Live, auditDir string) Unmatched {
	u := Unmatched{Policies: []string{}, Matched: []Match{}}
	switch {
	case !l.Running:
		u.Why = "enforcement is not running: the match counters are in the datapath"
		return u
	case st.PolicyHits == nil:
		u.Why = "the match counters could not be read (" + unavailable(st) + ")"
		return u
	}
	// The counters are by the index of a policy in the set the worker
	// compiled for its labels; the worker's policy_applied record of that
	// generation lists them in that order.
	at, names, err := applied(auditDir, l.Generation)
	if err != nil || names == nil {
		u.Why = fmt.Sprintf("the audit log holds no policy_applied record of generation %d, which names the policies the counters are of", l.Generation)
		if err != nil {
			u.Why += " (" + err.Error() + ")"
		}
		return u
	}
	if len(names) == 0 {
		u.Why = "no policy applies to this host: there are no rules to review"
		return u
	}
	u.Window = fmt.Sprintf("since policy generation %d was applied", l.Generation)
	u.From = at
	hits := map[int]status.PolicyHit{}
	for _, h := range st.PolicyHits {
		hits[h.Index] = h
	}
	for i, name := range names {
		h, ok := hits[i]
		if !ok || h.Packets == 0 {
			u.Policies = append(u.Policies, name)
			continue
		}
		last := "unknown"
		if h.LastHit != nil {
			last = h.LastHit.Format(time.RFC3339)
		}
		u.Matched = append(u.Matched, Match{Policy: name, Packets: h.Packets, LastHit: last})
	}
	slices.Sort(u.Policies)
	return u
}

// applied is what the audit log says of generation gen: when it was
// applied and its policies in the worker's order (nil when no record).
func applied(dir string, gen uint64) (string, []string, error) {
	if dir == "" {
		return "", nil, errors.New("no audit directory given")
	}
	var at string
	var names []string
	err := audit.Each(dir, func(r audit.Record) {
		if r.Type != audit.TypePolicyApplied {
			return
		}
		if g, ok := r.Details["generation"].(float64); !ok || uint64(g) != gen {
			return
		}
		list, _ := r.Details["policies"].([]any)
		at, names = r.Time, []string{}
		for _, n := range list {
			if s, ok := n.(string); ok {
				names = append(names, s)
			}
		}
	})
	return at, names, err
}
