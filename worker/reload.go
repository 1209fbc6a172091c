package worker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/metrics"
	"github.com/pci-segment/pci-segment/policy"
)

// Reload timing. A burst of file events (an editor's save, a configuration
// tool replacing several files) becomes one reload once the directories
// have been quiet for settle, or after settleMax at the latest. A reload
// starts at least reloadGap after the previous one (or the start) ended,
// which keeps the worker well inside the loader's rate for Applied and
// Refused (30 a minute, the start's Applied included) however often SIGHUP
// comes.
const (
	settle    = 500 * time.Millisecond
	settleMax = 5 * time.Second
	reloadGap = 2500 * time.Millisecond
)

// applier is the only writer of the policy halves: one set at a time, each
// validated and compiled whole before the first map write.
type applier struct {
	cfg    Config
	labels map[string]string
	pm     *datapath.PolicyMaps
	rec    *recorder
	met    *metrics.Metrics
	log    hclog.Logger
	conn   *ipc.Conn
	// gen and hash are the generation and set hash in force, allowed
	// what it allows (policy.Set.Allowances), for the next change's summary.
	gen     uint64
	hash    [32]byte
	allowed []string
	// held is how many policies each file of the set in force holds.
	held map[string]int
	// hup is a SIGHUP not yet served: it survives a full trigger channel,
	// so that every RELOADING the loader told systemd gets its READY.
	hup atomic.Bool
	// ready hears that a policy is in force.
	ready *readiness
}

// load reads and compiles the policy files.
func (a *applier) load() (*policy.Set, *policy.Compiled, error) {
	set, err := policy.Load(a.cfg.Policies)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			err = fmt.Errorf("%w\nthe worker reads policies as uid %d, confined to the -f directories: make files readable by it (for example group pci-segment, mode 0640; directories 0750), and keep them in those directories rather than linked from elsewhere", err, os.Getuid())
		}
		return nil, nil, err
	}
	compiled, err := policy.Compile(set, a.labels)
	if err != nil {
		return nil, nil, fmt.Errorf("compile policy set: %w", err)
	}
	return set, compiled, nil
}

// apply makes the set live as generation gen, then records it and what
// asked for it.
func (a *applier) apply(set *policy.Set, compiled *policy.Compiled, gen uint64, trigger string) error {
	// What validate warns about (no policy selects this host, a direction
	// of a CDE host left unfiltered) must not pass silently at enforce.
	for _, w := range append(slices.Clone(set.Warnings), set.HostWarnings(a.labels)...) {
		a.log.Warn("policy set warning", "finding", w.Error())
		a.rec.write(audit.Record{Type: audit.TypePolicyWarning, Outcome: "warning", Who: who(),
			Resource: "policy set", Details: map[string]any{"finding": w.Error(), "labels": a.cfg.Labels}})
	}
	// The loader assigns the generation and accepts no other: conntrack
	// entries of another generation are judged again by the datapath.
	if err := a.pm.Apply(compiled, gen, set.Hash); err != nil {
		return fmt.Errorf("apply policy set: %w", err)
	}
	// What changed against the set in force (Req 1.2.2). A worker's first
	// set is compared with nothing: it cannot read what the one before
	// applied, and says so.
	now := set.Allowances(a.labels)
	added, removed := policy.Changed(a.allowed, now)
	against := "the set in force"
	if a.gen == 0 {
		against = "nothing: the first set this worker applies"
	}
	a.gen, a.hash, a.allowed = gen, set.Hash, now
	a.held = map[string]int{}
	for _, f := range set.Files {
		a.held[f.Path] = f.Policies
	}
	a.ready.policy()
	a.met.PolicyGeneration.Set(float64(gen))
	a.met.Policies.Set(float64(len(compiled.Policies)))
	for _, d := range []policy.Direction{policy.Ingress, policy.Egress} {
		governed := 0.0
		if compiled.Governed[d] {
			governed = 1
		}
		a.met.Governed.WithLabelValues(d.String()).Set(governed)
	}
	if !compiled.Governed[policy.Ingress] && !compiled.Governed[policy.Egress] {
		a.log.Warn("no applying policy governs ingress or egress: nothing is filtered", "policies", len(compiled.Policies), "labels", a.cfg.Labels)
	}
	n4 := 0
	for _, e := range compiled.Addrs {
		if e.Prefix.Addr().Is4() {
			n4++
		}
	}
	a.met.SetEntries(map[string]int{bpf.DatapathMapAddr4: n4, bpf.DatapathMapAddr6: len(compiled.Addrs) - n4,
		bpf.DatapathMapPorts: len(compiled.Ports)})
	if half, err := a.pm.Active(); err == nil {
		a.met.SetPolicies(compiled.Policies, half)
	} else {
		// The set is in force; only its per-policy metrics lag.
		a.log.Error("per-policy metrics still name the previous set: the half in force could not be read", "error", err)
	}
	a.met.Rules.Set(float64(compiled.Rules))
	a.met.LastApplied.SetToCurrentTime()
	files := make([]map[string]string, 0, len(set.Files))
	for _, f := range set.Files {
		files = append(files, map[string]string{"path": f.Path, "sha256": fmt.Sprintf("%x", f.SHA256)})
	}
	a.rec.write(audit.Record{Type: audit.TypePolicyApplied, Outcome: "success", Who: who(), Resource: "policy set",
		Details: map[string]any{"generation": gen, "trigger": trigger, "set_sha256": set.HashHex(), "files": files,
			"compared_with": against, "allowances_added": nonNil(added), "allowances_removed": nonNil(removed),
			"policies": compiled.Policies, "rules": compiled.Rules, "labels": a.cfg.Labels,
			"governed_ingress": compiled.Governed[policy.Ingress], "governed_egress": compiled.Governed[policy.Egress]}})
	a.log.Info("policy applied", "generation", gen, "trigger", trigger, "policies", len(compiled.Policies),
		"rules", compiled.Rules, "set_sha256", set.HashHex())
	return nil
}

// emptied refuses a set in which a file that holds policies in force
// holds none: an editor or a configuration tool that truncates a file
// before it writes it would otherwise unfilter, for a moment or for good,
// what the file governed. (At start an empty file is only warned about:
// no policy is in force to keep, and refusing would leave the host
// unfiltered.)
func (a *applier) emptied(set *policy.Set) error {
	for _, f := range set.Files {
		if n := a.held[f.Path]; n > 0 && f.Policies == 0 {
			return fmt.Errorf("%s holds no policy document now, and %d of the policies in force came from it (emptied, or a write in progress?): "+
				"the policy in force stays; to drop them, remove the file", f.Path, n)
		}
	}
	return nil
}

// reload reads the policies again and applies them as the next
// generation. A set that does not load, compile, fit or write is refused
// whole and the one in force stays; the loader hears which. A change in
// the directories that leaves the set as it is applies nothing.
func (a *applier) reload(trigger string) error {
	defer releaseParse()
	set, compiled, err := a.load()
	if err == nil && trigger == triggerFiles && set.Hash == a.hash {
		a.log.Debug("policy directories changed, policy set did not")
		return nil
	}
	if err == nil {
		err = a.emptied(set)
	}
	if err == nil {
		err = a.apply(set, compiled, a.gen+1, trigger)
	}
	ctx, cancel := context.WithTimeout(context.Background(), aliveEvery)
	defer cancel()
	if err != nil {
		why := err.Error()
		// One record per finding: a value with line breaks would reach
		// the operator, through the loader, as a block of bare lines.
		lines := strings.Split(why, "\n")
		for _, l := range lines {
			a.log.Error("policy set refused", "finding", l)
		}
		a.log.Error("reload rejected; the policy in force stays", "trigger", trigger, "generation", a.gen, "findings", len(lines))
		a.rec.write(audit.Record{Type: audit.TypePolicyRejected, Outcome: "failure", Who: who(), Resource: "policy set",
			Details: map[string]any{"trigger": trigger, "reason": why, "generation_in_force": a.gen}})
		a.met.Reloads.WithLabelValues("rejected").Inc()
		if len(why) > ipc.MaxText {
			why = why[:ipc.MaxText]
		}
		return a.conn.Send(ctx, ipc.Refused{Why: why})
	}
	a.met.Reloads.WithLabelValues("applied").Inc()
	return a.conn.Send(ctx, ipc.Applied{Generation: a.gen, SetHash: a.hash})
}

// releaseParse hands the memory a policy read took back to the kernel once
// nothing refers to it. Reads are rare and large (a 100,000-prefix set
// leaves some hundred MiB of garbage), and the runtime would otherwise
// return it only slowly: until then it counts as the worker's resident
// memory.
func releaseParse() { debug.FreeOSMemory() }

// What asked for a policy set to be applied.
const (
	triggerStart  = "start"
	triggerSIGHUP = "SIGHUP"
	triggerFiles  = "policy files changed"
)

// reloads applies the reloads asked for on triggers, reloadGap apart; what
// arrives meanwhile is coalesced into one. It returns when the channel to
// the loader fails.
func (a *applier) reloads(triggers <-chan string) error {
	last := time.Now() // the start's Applied
	for trigger := range triggers {
		if wait := reloadGap - time.Since(last); wait > 0 {
			time.Sleep(wait)
		}
		for drained := false; !drained; {
			select {
			case <-triggers:
			default:
				drained = true
			}
		}
		// A SIGHUP coalesced with file changes is still a SIGHUP.
		if a.hup.Swap(false) {
			trigger = triggerSIGHUP
		}
		err := a.reload(trigger)
		last = time.Now()
		if err != nil {
			return err
		}
	}
	return nil
}

// watch asks for a reload when a file in the policy directories is
// created, written, removed or renamed (configuration tools replace files
// by rename), once the burst has settled. It watches the directories, not
// the files, so a replaced file is still seen.
func watch(dirs []string, triggers chan<- string, log hclog.Logger) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch policy directories: %w", err)
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, fmt.Errorf("watch policy directory %s: %w", d, err)
		}
	}
	go func() {
		var quiet, deadline <-chan time.Time
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op == fsnotify.Chmod {
					continue
				}
				quiet = time.After(settle)
				if deadline == nil {
					deadline = time.After(settleMax)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				// An overflowed queue lost events: reload to be sure.
				log.Warn("watching policy directories", "error", err)
				quiet = time.After(settle)
			case <-quiet:
				quiet, deadline = nil, nil
				request(triggers, triggerFiles)
			case <-deadline:
				quiet, deadline = nil, nil
				request(triggers, triggerFiles)
			}
		}
	}()
	return w, nil
}

// request asks for a reload without blocking: one pending is enough.
func request(triggers chan<- string, trigger string) {
	select {
	case triggers <- trigger:
	default:
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
