package status

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pci-segment/pci-segment/privilege"
)

// WriteJSON writes s as indented JSON.
func (s *Status) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteText writes s for a reader: one section per part, in the order of
// the hardening guide's manual checks.
func (s *Status) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	view := "full view"
	if !s.Viewer.Root {
		view = "not root: partial view, see Not available"
	}
	p("pci-segment status")
	p("  pin directory\t%s", s.PinDir)
	p("  state directory\t%s", s.StateDir)
	p("  viewed\t%s as uid %d (%s)", s.Time.Format(time.RFC3339), s.Viewer.UID, view)

	for _, proc := range []struct {
		role string
		p    *Process
	}{{"Loader", s.Loader}, {"Worker", s.Worker}} {
		p("")
		if proc.p == nil {
			p("%s\tnot running", proc.role)
			continue
		}
		writeProcess(p, proc.role, proc.p)
		if proc.role == "Worker" {
			writeLandlock(p, s.Landlock)
		}
	}
	if s.Worker == nil && s.Landlock != nil {
		writeLandlock(p, s.Landlock)
	}

	p("")
	p("Development overrides")
	switch {
	case s.Overrides == nil:
		p("  unknown (see Not available)")
	case len(s.Overrides) == 0:
		p("  none")
	}
	for _, o := range s.Overrides {
		state := "in effect"
		switch {
		case o.Invalid:
			state = "invalid value"
		case !o.InEffect:
			state = "set, not in effect"
		}
		name := o.Name
		if o.Value != "" {
			name += "=" + o.Value
		}
		p("  %s\t%s\t(%s)", name, state, o.Source)
	}

	p("")
	p("Policy in force")
	if s.Policy == nil {
		p("  unknown (see Not available)")
	} else {
		p("  generation\t%d", s.Policy.Generation)
		p("  set sha256\t%s", s.Policy.SetSHA256)
		p("  layout\t%d", s.Policy.Layout)
		switch s.Policy.Mode {
		case "monitor":
			p("  mode\tMONITOR: not segmented, denied packets pass (counted and audited)")
		case "enforce":
			p("  mode\tenforce")
		}
		if s.Policy.Governed != nil {
			for _, d := range []string{"ingress", "egress"} {
				if slices.Contains(s.Policy.Governed, d) {
					p("  %s\tgoverned: what no rule allows is dropped", d)
				} else {
					p("  %s\tNOT FILTERED: no policy in force governs it", d)
				}
			}
		}
	}

	p("")
	p("Links")
	switch {
	case s.Links == nil:
		p("  unknown (see Not available)")
	case len(s.Links) == 0:
		p("  none")
	}
	for _, l := range s.Links {
		pos := "position unknown"
		switch {
		case l.Position == 0:
			pos = "at the head"
		case l.Position > 0:
			pos = fmt.Sprintf("position %d", l.Position)
		}
		p("  %s\t%s\tlink %d\tprogram %s\t%s\tahead: %s\tbehind: %s",
			l.interfaceLabel(), l.Direction, l.ID, progLabel(l.Program), pos, progList(l.Ahead), progList(l.Behind))
	}
	if len(s.Links) > 0 {
		p("  (interfaces as seen from %s network namespace)", s.Links[0].Namespace)
	}

	p("")
	p("Pins")
	switch {
	case s.Pins == nil:
		p("  unknown (see Not available)")
	case len(s.Pins) == 0:
		p("  none")
	}
	for _, pin := range s.Pins {
		detail := pin.Type
		if pin.MaxEntries > 0 {
			detail += fmt.Sprintf(", %d entries", pin.MaxEntries)
		}
		if pin.Error != "" {
			detail = "error: " + pin.Error
		}
		p("  %s\t%s\tid %d\t%s", pin.Name, pin.Kind, pin.ID, detail)
	}

	if c := s.Counters; c != nil {
		p("")
		p("Counters")
		for _, d := range []struct {
			name string
			v    Verdicts
		}{{"ingress", c.Ingress}, {"egress", c.Egress}} {
			p("  %s\tallow %d packets (%d bytes)\tdeny %d packets (%d bytes)\twould deny, passed %d packets (%d bytes)",
				d.name, d.v.AllowPackets, d.v.AllowBytes, d.v.DenyPackets, d.v.DenyBytes, d.v.WouldDenyPackets, d.v.WouldDenyBytes)
		}
		var drops []string
		for _, r := range sortedKeys(c.Drops) {
			drops = append(drops, fmt.Sprintf("%s %d", r, c.Drops[r]))
		}
		p("  drops\t%s", strings.Join(drops, ", "))
		p("  events lost\t%d", c.EventsLost)
	}
	if c := s.Conntrack; c != nil {
		p("  connection tracking\t%d of %d flows", c.Entries, c.Capacity)
	}
	if len(s.PolicyHits) > 0 {
		var hits []string
		for _, h := range s.PolicyHits {
			hits = append(hits, fmt.Sprintf("#%d %d", h.Index, h.Packets))
		}
		p("  policy matches\t%s (by policy index; `report` names them)", strings.Join(hits, ", "))
	}

	p("")
	p("Findings")
	if len(s.Findings) == 0 {
		p("  none")
	}
	for _, f := range s.Findings {
		p("  - %s", f)
	}
	if len(s.Unavailable) > 0 {
		p("")
		p("Not available")
		for _, u := range s.Unavailable {
			p("  - %s: %s", u.What, u.Reason)
		}
	}
	return tw.Flush()
}

func writeProcess(p func(string, ...any), role string, proc *Process) {
	p("%s\tpid %d, parent %d", role, proc.PID, proc.PPID)
	p("  command\t%s", strings.Join(proc.Cmdline, " "))
	if pr := proc.Privileges; pr != nil {
		groups := make([]string, len(pr.Groups))
		for i, g := range pr.Groups {
			groups[i] = g.String()
		}
		p("  user\t%s", pr.User)
		p("  group\t%s", pr.Group)
		p("  groups\t%s", orNone(strings.Join(groups, ", ")))
		p("  uid\treal %d, effective %d, saved %d, fs %d", pr.UIDs.Real, pr.UIDs.Effective, pr.UIDs.Saved, pr.UIDs.FS)
		p("  gid\treal %d, effective %d, saved %d, fs %d", pr.GIDs.Real, pr.GIDs.Effective, pr.GIDs.Saved, pr.GIDs.FS)
		for _, c := range []struct {
			name  string
			mask  Mask
			names []string
		}{
			{"CapEff", pr.CapMasks.Effective, pr.Capabilities.Effective},
			{"CapPrm", pr.CapMasks.Permitted, pr.Capabilities.Permitted},
			{"CapInh", pr.CapMasks.Inheritable, pr.Capabilities.Inheritable},
			{"CapBnd", pr.CapMasks.Bounding, pr.Capabilities.Bounding},
			{"CapAmb", pr.CapMasks.Ambient, pr.Capabilities.Ambient},
		} {
			names := orNone(strings.Join(c.names, ","))
			if uint64(c.mask) == allCaps {
				names = "all"
			}
			p("  %s\t%s  %s", c.name, c.mask, names)
		}
		nnp := 0
		if pr.NoNewPrivs {
			nnp = 1
		}
		p("  NoNewPrivs\t%d", nnp)
		filters := "filter count unknown"
		if pr.Seccomp.Filters >= 0 {
			filters = fmt.Sprintf("%d filters", pr.Seccomp.Filters)
		}
		p("  Seccomp\t%s, %s", pr.Seccomp.Mode, filters)
		alike := "all alike"
		if n := len(pr.ThreadsHoldingLess); n > 0 {
			alike = fmt.Sprintf("%d alike, %d holding less than the leader (never more)", pr.Threads-n, n)
		}
		if pr.ThreadsDiffer != "" {
			alike = "not alike: " + pr.ThreadsDiffer
		}
		p("  threads\t%d, %s", pr.Threads, alike)
		for _, t := range pr.ThreadsHoldingLess {
			p("  \t  %s", t)
		}
	}
	switch proc.MACLabel {
	case "":
	case "none":
		p("  MAC label\tnone (no security module provides process labels)")
	default:
		p("  MAC label\t%s", proc.MACLabel)
	}
	if b := proc.BPF; b != nil {
		p("  BPF objects\t%d maps, %d programs, %d links", len(b.Maps), len(b.Programs), len(b.Links))
		for _, group := range [][]BPFObject{b.Maps, b.Programs, b.Links} {
			for _, o := range group {
				p("    fd %d\t%s %d\t%s", o.FD, o.Kind, o.ID, objectDetail(o))
			}
		}
	}
}

// allCaps is every capability this binary has a name for.
const allCaps = 1<<(privilege.LastCap+1) - 1

func objectDetail(o BPFObject) string {
	var parts []string
	if o.Name != "" {
		parts = append(parts, o.Name)
	}
	parts = append(parts, o.Type)
	switch o.Kind {
	case "map":
		parts = append(parts, fmt.Sprintf("%d entries", o.MaxEntries), o.Access+" descriptor")
		if o.Frozen {
			parts = append(parts, "frozen")
		}
	case "program":
		if o.Tag != "" {
			parts = append(parts, "tag "+o.Tag)
		}
	case "link":
		parts = append(parts, fmt.Sprintf("program %d", o.ProgramID))
		if o.AttachType != "" {
			parts = append(parts, fmt.Sprintf("ifindex %d %s", o.Ifindex, o.AttachType))
		}
	}
	return strings.Join(parts, ", ")
}

func writeLandlock(p func(string, ...any), l *Landlock) {
	if l == nil {
		p("  Landlock\tunknown (no report; see Not available)")
		return
	}
	r := l.Report
	var kinds []string
	for _, k := range []struct {
		on   bool
		name string
	}{{r.Filesystem, "file system"}, {r.Network, "TCP"}, {r.Scoped, "signals and abstract sockets"}} {
		if k.on {
			kinds = append(kinds, k.name)
		}
	}
	state := "NOT enforced"
	if r.Enforced {
		state = strings.Join(kinds, ", ") + " restricted"
	}
	whose := fmt.Sprintf("as reported by pid %d at %s", r.PID, r.Time.Format(time.RFC3339))
	if !l.Current {
		whose += ", NOT the running worker"
	}
	p("  Landlock\tABI %d: %s (%s)", r.ABI, state, whose)
	for _, g := range r.Paths {
		p("    %s\t%s\t%s", g.Access, g.Path, g.Why)
	}
	for _, port := range r.BindTCP {
		p("    bind tcp\t%d\t%s", port.Port, port.Why)
	}
	if len(r.ConnectTCP) == 0 {
		p("    connect tcp\tnone")
	}
	for _, port := range r.ConnectTCP {
		p("    connect tcp\t%d\t%s", port.Port, port.Why)
	}
	for _, m := range r.Missing {
		p("    no location\t%s", m)
	}
	for _, n := range r.NotRestricted {
		p("    not restricted\t%s", n)
	}
}

func progLabel(pr Prog) string {
	s := fmt.Sprintf("%d", pr.ID)
	if pr.Name != "" {
		s += " " + pr.Name
	}
	return s
}

func progList(ps []Prog) string {
	if len(ps) == 0 {
		return "none"
	}
	var out []string
	for _, pr := range ps {
		label := progLabel(pr)
		if pr.Type != "" {
			label += " (" + pr.Type + ")"
		}
		out = append(out, label)
	}
	return strings.Join(out, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func sortedKeys(m map[string]uint64) []string { return slices.Sorted(maps.Keys(m)) }
