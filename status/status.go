package status

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/confine"
)

// Options name the instance to show.
type Options struct {
	// PinDir is the instance's --pin-dir (the layout directory is below
	// it).
	PinDir string
	// StateDir is its --state-dir, where the worker's Landlock report is;
	// "" for the running instance's (its loader's command line says), or
	// DefaultStateDir without one.
	StateDir string
}

// Status is everything `pci-segment status` shows. In JSON, null means
// not known (Unavailable says why) and an empty list means none.
type Status struct {
	Time     time.Time `json:"time"`
	Viewer   Viewer    `json:"viewer"`
	PinDir   string    `json:"pin_dir"`
	StateDir string    `json:"state_dir"`
	// AuditDir is the instance's --audit-dir, as its loader was started.
	AuditDir string `json:"audit_dir"`

	// Loader and Worker are nil when no such process runs.
	Loader *Process `json:"loader"`
	Worker *Process `json:"worker"`

	Overrides []Override `json:"overrides"`
	Landlock  *Landlock  `json:"landlock"`
	Pins      []Pin      `json:"pins"`
	Links     []Link     `json:"links"`
	Policy    *Policy    `json:"policy"`
	Counters  *Counters  `json:"counters"`
	Conntrack *Conntrack `json:"conntrack"`
	// PolicyHits count the packets of the flows each policy of the set in
	// force let in, by its index in the compiled set (the worker's
	// policy_applied record and `report` name them), since that set was
	// written.
	PolicyHits []PolicyHit `json:"policy_hits"`

	// Findings are what an auditor should look at.
	Findings []string `json:"findings"`
	// Unavailable lists what could not be read, and why.
	Unavailable []Unavailable `json:"unavailable"`
}

// Viewer is who ran status.
type Viewer struct {
	UID  int  `json:"uid"`
	Root bool `json:"root"`
}

// Unavailable is one thing status could not read.
type Unavailable struct {
	What   string `json:"what"`
	Reason string `json:"reason"`
}

// Override is one development override, from the loader's environment or
// command line.
type Override struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// InEffect is false for a boolean set to a false value; Invalid for
	// a value the loader would have refused.
	InEffect bool   `json:"in_effect"`
	Invalid  bool   `json:"invalid,omitempty"`
	Source   string `json:"source"`
}

// Landlock is what the worker says it applied.
type Landlock struct {
	// File is the report's path.
	File string `json:"file"`
	// Current is true when the report was written by the running worker;
	// a report of an earlier worker says nothing about this one.
	Current bool            `json:"current"`
	Report  *confine.Report `json:"report"`
}

// Policy is the pinned info map: what the datapath enforces now.
type Policy struct {
	Generation uint64 `json:"generation"`
	// SetSHA256 is the hash of the policy set, as validate and the audit
	// log print it.
	SetSHA256 string `json:"set_sha256"`
	Layout    uint32 `json:"layout"`
	// Mode is "enforce", or "monitor" when what the policy denies passes
	// (counted and audited): the host is then not segmented.
	Mode string `json:"mode,omitempty"`
	// Governed lists the directions a policy in force governs ("ingress",
	// "egress"); the others are not filtered. null when unread.
	Governed []string `json:"governed"`
}

// Counters are the datapath's counters, summed over CPUs.
type Counters struct {
	Ingress    Verdicts          `json:"ingress"`
	Egress     Verdicts          `json:"egress"`
	Drops      map[string]uint64 `json:"drops"`
	EventsLost uint64            `json:"events_lost"`
}

// Conntrack is the use of connection tracking.
type Conntrack struct {
	Entries  int `json:"entries"`
	Capacity int `json:"capacity"`
}

// PolicyHit is one policy's match counter in the half in force.
type PolicyHit struct {
	Index   int    `json:"index"`
	Packets uint64 `json:"packets"`
	// LastHit is when a packet of a flow its rules let in last passed;
	// nil for never.
	LastHit *time.Time `json:"last_hit"`
}

// Verdicts count one direction.
type Verdicts struct {
	AllowPackets uint64 `json:"allow_packets"`
	AllowBytes   uint64 `json:"allow_bytes"`
	DenyPackets  uint64 `json:"deny_packets"`
	DenyBytes    uint64 `json:"deny_bytes"`
	// WouldDeny are packets the policy denied that monitor mode passed.
	WouldDenyPackets uint64 `json:"would_deny_packets"`
	WouldDenyBytes   uint64 `json:"would_deny_bytes"`
}

// Enforce's default --state-dir and --audit-dir.
const (
	DefaultStateDir = "/var/lib/pci-segment"
	DefaultAuditDir = "/var/log/pci-segment"
)

// Gather reads the instance o names. It never fails: what it cannot read
// is listed in Unavailable.
func Gather(o Options) *Status {
	s := &Status{
		Time:        time.Now().UTC(),
		Viewer:      Viewer{UID: os.Geteuid(), Root: os.Geteuid() == 0},
		PinDir:      filepath.Join(o.PinDir, bpf.Layout),
		StateDir:    o.StateDir,
		Findings:    []string{},
		Unavailable: []Unavailable{},
	}
	g := &gatherer{s: s}

	inst, err := findInstance(procRoot, o.PinDir, os.Getpid())
	if err != nil {
		g.unavailable("pci-segment processes", err)
	}
	// The instance's directories from the root loader's command line,
	// not the worker's (which the worker could rewrite), resolved from the
	// loader's working directory when relative (root may read it; without
	// it, the worker's, which the loader made absolute).
	dirOf := func(flag, def string) string {
		if inst.loader == 0 {
			return def
		}
		d := flagOf(inst.loaderArgs, flag, def)
		if !filepath.IsAbs(d) {
			cwd, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(inst.loader), "cwd"))
			d = filepath.Join(cwd, d)
			if err != nil {
				d = cmp.Or(flagOf(inst.procs[inst.worker].args, flag, ""), def)
			}
		}
		return d
	}
	if o.StateDir == "" {
		o.StateDir = dirOf("--state-dir", DefaultStateDir)
	}
	s.StateDir, s.AuditDir = o.StateDir, dirOf("--audit-dir", DefaultAuditDir)
	for _, extra := range inst.others {
		g.finding(fmt.Sprintf("another loader (pid %d) also names this pin directory", extra))
	}
	for _, p := range inst.posers {
		g.finding(fmt.Sprintf("pid %d (uid %d) runs as `pci-segment enforce` on this pin directory but not as root: it is not the loader, and is not shown as one", p, inst.procs[p].uid))
	}
	if inst.loader != 0 {
		s.Loader = g.process("loader", inst.loader, inst.procs[inst.loader])
		s.Overrides = g.overrides(inst.loader, inst.loaderArgs)
	}
	if inst.worker != 0 {
		s.Worker = g.process("worker", inst.worker, inst.procs[inst.worker])
	}
	s.Landlock = g.landlock(o.StateDir, inst.worker)

	netns := g.netns(inst.loader)
	s.Pins = g.pins(s.PinDir)
	s.Links = g.links(s.Pins, netns)
	s.Policy = g.policy(s.PinDir, s.Pins)
	s.Counters = g.counters(s.PinDir, s.Pins)
	s.Conntrack = g.conntrack(s.PinDir, s.Pins)
	s.PolicyHits = g.policyHits(s.PinDir, s.Pins, s.Policy)

	g.judge()
	return s
}

type gatherer struct {
	s *Status
}

func (g *gatherer) unavailable(what string, err error) {
	g.s.Unavailable = append(g.s.Unavailable, Unavailable{What: what, Reason: reason(err)})
}

func (g *gatherer) finding(f string) {
	if !slices.Contains(g.s.Findings, f) {
		g.s.Findings = append(g.s.Findings, f)
	}
}

// reason says why err happened, with the way out when it is privilege.
func reason(err error) string {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EPERM):
		if os.Geteuid() != 0 {
			return "permission denied: needs root (" + err.Error() + ")"
		}
		return "permission denied (" + err.Error() + ")"
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist (" + err.Error() + ")"
	}
	return err.Error()
}

// judge adds the findings that compare parts of the view.
func (g *gatherer) judge() {
	s := g.s
	if s.Loader == nil && len(s.Links) > 0 {
		g.finding("no loader runs for these pins: the links keep enforcing the last policy, but nothing restarts the worker")
	}
	if s.Loader != nil && s.Worker == nil {
		g.finding("the loader runs without a worker: no policy updates, no audit records, no metrics")
	}
	if w := s.Worker; w != nil && w.Privileges != nil {
		if w.UIDs.Effective == 0 || w.UIDs.Real == 0 || w.GIDs.Effective == 0 {
			g.finding(fmt.Sprintf("the worker (pid %d) runs as uid %d gid %d", w.PID, w.UIDs.Effective, w.GIDs.Effective))
		}
		c := w.CapMasks
		if c.Effective|c.Permitted|c.Inheritable|c.Bounding|c.Ambient != 0 {
			g.finding(fmt.Sprintf("the worker (pid %d) holds capabilities; it must hold none in any set", w.PID))
		}
		if !w.NoNewPrivs {
			g.finding(fmt.Sprintf("the worker (pid %d) runs without NoNewPrivs", w.PID))
		}
		if w.Seccomp.Mode != "filter" {
			g.finding(fmt.Sprintf("the worker (pid %d) runs without a seccomp filter", w.PID))
		}
	}
	// The loader's threads differ by design: the one that starts the
	// worker empties its own bounding set and sets NoNewPrivs first.
	if w := s.Worker; w != nil && w.Privileges != nil && w.ThreadsDiffer != "" {
		g.finding(fmt.Sprintf("the worker (pid %d) has threads that differ from its leader: %s",
			w.PID, w.ThreadsDiffer))
	}
	for _, o := range s.Overrides {
		if o.InEffect {
			g.finding(fmt.Sprintf("development override in effect: %s (not allowed in production, PCI-DSS Req 2.2.4)",
				o.Name))
		}
		if o.Invalid {
			g.finding(fmt.Sprintf("override %s=%s has a value the loader refuses", o.Name, o.Value))
		}
	}
	if s.Worker != nil && s.Landlock != nil {
		switch r := s.Landlock.Report; {
		case !s.Landlock.Current:
			g.finding(fmt.Sprintf("the Landlock report in %s is from pid %d, not the running worker %d",
				s.Landlock.File, r.PID, s.Worker.PID))
		case !r.Enforced:
			g.finding("the worker runs without Landlock: " + strings.Join(r.NotRestricted, "; "))
		case !r.Network:
			g.finding(fmt.Sprintf("the worker's Landlock (ABI %d) does not restrict the network", r.ABI))
		}
	}
	dirs := map[uint32][]string{}
	for _, l := range s.Links {
		dirs[l.Ifindex] = append(dirs[l.Ifindex], l.Direction)
		for _, a := range l.Ahead {
			g.finding(fmt.Sprintf("program %d (%s %s) runs before ours on %s %s: it sees every packet first and may pass it on",
				a.ID, a.Type, a.Name, l.interfaceLabel(), l.Direction))
		}
	}
	for ifindex, d := range dirs {
		if len(d) == 1 {
			g.finding(fmt.Sprintf("interface index %d has only a %s link pinned", ifindex, d[0]))
		}
	}
}
