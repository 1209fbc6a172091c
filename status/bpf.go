package status

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
)

// HeldBPF are the BPF objects one process holds open.
type HeldBPF struct {
	Maps     []BPFObject `json:"maps"`
	Programs []BPFObject `json:"programs"`
	Links    []BPFObject `json:"links"`
}

// BPFObject is one descriptor of a BPF map, program or link, from
// /proc/PID/fdinfo; Name (and a program's Tag) come from the kernel by id.
type BPFObject struct {
	FD   int    `json:"fd"`
	Kind string `json:"kind"` // map, program, link
	ID   uint32 `json:"id"`
	Name string `json:"name,omitempty"`
	Type string `json:"type"`
	// Access is a map descriptor's mode: read-write, read-only or
	// write-only. A read-only descriptor cannot change the map.
	Access     string `json:"access,omitempty"`
	MaxEntries uint32 `json:"max_entries,omitempty"`
	KeySize    uint32 `json:"key_size,omitempty"`
	ValueSize  uint32 `json:"value_size,omitempty"`
	Frozen     bool   `json:"frozen,omitempty"`
	Tag        string `json:"tag,omitempty"`
	// For links: the program, and for tcx links the interface and hook.
	ProgramID  uint32 `json:"program_id,omitempty"`
	Ifindex    uint32 `json:"ifindex,omitempty"`
	AttachType string `json:"attach_type,omitempty"`
}

// bpfKinds maps the fd link targets of BPF objects to their kind.
var bpfKinds = map[string]string{
	"anon_inode:bpf-map":  "map",
	"anon_inode:bpf-prog": "program",
	"anon_inode:bpf_link": "link",
}

// heldBPF lists the BPF objects process pid holds.
func heldBPF(pid int) (*HeldBPF, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	entries, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return nil, err
	}
	held := &HeldBPF{Maps: []BPFObject{}, Programs: []BPFObject{}, Links: []BPFObject{}}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join(dir, "fd", e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		kind, ok := bpfKinds[target]
		if !ok {
			continue
		}
		info, err := os.ReadFile(filepath.Join(dir, "fdinfo", e.Name()))
		if err != nil {
			continue
		}
		o := parseFDInfo(fd, kind, string(info))
		o.Name, o.Tag = objectName(o)
		switch kind {
		case "map":
			held.Maps = append(held.Maps, o)
		case "program":
			held.Programs = append(held.Programs, o)
		case "link":
			held.Links = append(held.Links, o)
		}
	}
	for _, objs := range [][]BPFObject{held.Maps, held.Programs, held.Links} {
		slices.SortFunc(objs, func(a, b BPFObject) int { return a.FD - b.FD })
	}
	return held, nil
}

// parseFDInfo reads the fields of a BPF descriptor's fdinfo that say what
// it is. Unknown fields are ignored; a missing one stays zero.
func parseFDInfo(fd int, kind, text string) BPFObject {
	f := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	num := func(key string) uint32 {
		n, _ := strconv.ParseUint(f[key], 10, 32)
		return uint32(n)
	}
	o := BPFObject{FD: fd, Kind: kind}
	if flags, err := strconv.ParseUint(f["flags"], 8, 32); err == nil && kind == "map" {
		switch flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			o.Access = "read-only"
		case unix.O_WRONLY:
			o.Access = "write-only"
		case unix.O_RDWR:
			o.Access = "read-write"
		}
	}
	switch kind {
	case "map":
		o.ID = num("map_id")
		o.Type = ebpf.MapType(num("map_type")).String()
		o.MaxEntries, o.KeySize, o.ValueSize = num("max_entries"), num("key_size"), num("value_size")
		o.Frozen = f["frozen"] == "1"
	case "program":
		o.ID = num("prog_id")
		o.Type = ebpf.ProgramType(num("prog_type")).String()
		o.Tag = f["prog_tag"]
	case "link":
		o.ID = num("link_id")
		o.Type = f["link_type"]
		o.ProgramID = num("prog_id")
		o.Ifindex = num("ifindex")
		// "46 (ingress)": the number, then the kernel's own word.
		if at, _, _ := strings.Cut(f["attach_type"], " "); at != "" {
			if n, err := strconv.ParseUint(at, 10, 32); err == nil {
				o.AttachType = attachName(ebpf.AttachType(n))
			}
		}
	}
	return o
}

// objectName asks the kernel for the name of a map or program by id
// (CAP_SYS_ADMIN); "" when it will not say.
func objectName(o BPFObject) (name, tag string) {
	switch o.Kind {
	case "map":
		m, err := ebpf.NewMapFromID(ebpf.MapID(o.ID))
		if err != nil {
			return "", o.Tag
		}
		defer m.Close()
		if info, err := m.Info(); err == nil {
			return info.Name, o.Tag
		}
	case "program":
		return programName(o.ID, o.Tag)
	}
	return "", o.Tag
}

func programName(id uint32, tag string) (string, string) {
	p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id))
	if err != nil {
		return "", tag
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return "", tag
	}
	if tag == "" {
		tag = info.Tag
	}
	return info.Name, tag
}

func attachName(a ebpf.AttachType) string {
	switch a {
	case ebpf.AttachTCXIngress:
		return "tcx_ingress"
	case ebpf.AttachTCXEgress:
		return "tcx_egress"
	}
	return a.String()
}

// Pin is one entry of the pin directory.
type Pin struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // map, link
	ID   uint32 `json:"id,omitempty"`
	// Type is the map type, or the link type (tcx).
	Type       string `json:"type,omitempty"`
	MaxEntries uint32 `json:"max_entries,omitempty"`
	Error      string `json:"error,omitempty"`

	link *Link
}

// pins lists the layout directory and opens each pin read-only: nil when
// the directory cannot be read.
func (g *gatherer) pins(dir string) []Pin {
	out := []Pin{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		g.finding("nothing is pinned in " + dir + ": this instance enforces nothing")
		return out
	}
	if err != nil {
		g.unavailable("pins ("+dir+")", err)
		return nil
	}
	for _, e := range entries {
		p := Pin{Name: e.Name(), Kind: "map"}
		path := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), "link_") {
			p.Kind = "link"
			g.readLinkPin(&p, path)
		} else {
			m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
			if err != nil {
				p.Error = err.Error()
			} else {
				if info, err := m.Info(); err == nil {
					id, _ := info.ID()
					p.ID, p.Type, p.MaxEntries = uint32(id), info.Type.String(), info.MaxEntries
				} else {
					p.Error = err.Error()
				}
				m.Close()
			}
		}
		out = append(out, p)
	}
	return out
}

// readLinkPin opens a pinned link. The kernel opens links read-write only
// (BPF_OBJ_GET refuses BPF_F_RDONLY on a link): the descriptor is used for
// BPF_OBJ_GET_INFO_BY_FD and closed, which leaves a pinned link attached.
func (g *gatherer) readLinkPin(p *Pin, path string) {
	l, err := link.LoadPinnedLink(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if errors.Is(err, syscall.EINVAL) {
		l, err = link.LoadPinnedLink(path, nil)
	}
	if err != nil {
		p.Error = err.Error()
		return
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		p.Error = err.Error()
		return
	}
	p.ID = uint32(info.ID)
	tcx := info.TCX()
	if tcx == nil {
		p.Type = fmt.Sprintf("link type %d", info.Type)
		p.Error = "not a tcx link"
		return
	}
	p.Type = "tcx"
	lk := &Link{
		Pin: p.Name, ID: uint32(info.ID), Ifindex: tcx.Ifindex, Position: -1,
		attach:  ebpf.AttachType(tcx.AttachType),
		Program: Prog{ID: uint32(info.Program)},
		Ahead:   []Prog{}, Behind: []Prog{},
	}
	switch lk.attach {
	case ebpf.AttachTCXIngress:
		lk.Direction = "ingress"
	case ebpf.AttachTCXEgress:
		lk.Direction = "egress"
	default:
		lk.Direction = attachName(lk.attach)
	}
	if want := fmt.Sprintf("link_%d_%s", tcx.Ifindex, lk.Direction); want != p.Name {
		g.finding(fmt.Sprintf("pin %s holds the %s link of interface index %d",
			p.Name, lk.Direction, tcx.Ifindex))
	}
	p.link = lk
}

// Link is one pinned tcx link: which hook it holds and what else runs
// there.
type Link struct {
	Pin       string `json:"pin"`
	ID        uint32 `json:"id"`
	Ifindex   uint32 `json:"ifindex"`
	Interface string `json:"interface,omitempty"`
	// Namespace says where Interface, Position, Ahead and Behind were
	// looked up.
	Namespace string `json:"namespace"`
	Direction string `json:"direction"`
	Program   Prog   `json:"program"`
	// Position is ours in the hook's chain, 0 at the head; -1 unknown.
	Position int `json:"position"`
	// Ahead run before ours, Behind after (on TCX_NEXT).
	Ahead  []Prog `json:"ahead"`
	Behind []Prog `json:"behind"`

	attach ebpf.AttachType
}

func (l Link) interfaceLabel() string {
	if l.Interface != "" {
		return fmt.Sprintf("%s (ifindex %d)", l.Interface, l.Ifindex)
	}
	return fmt.Sprintf("ifindex %d", l.Ifindex)
}

// Prog is a program attached to a hook.
type Prog struct {
	ID     uint32 `json:"id"`
	Name   string `json:"name,omitempty"`
	Type   string `json:"type,omitempty"`
	Tag    string `json:"tag,omitempty"`
	LinkID uint32 `json:"link_id,omitempty"`
}

func describeProg(p *Prog) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(p.ID))
	if err != nil {
		return
	}
	defer prog.Close()
	if info, err := prog.Info(); err == nil {
		p.Name, p.Type, p.Tag = info.Name, info.Type.String(), info.Tag
	}
}

// netnsTarget is where interface indexes are looked up.
type netnsTarget struct {
	path  string // "" for status's own namespace
	label string
	known bool
}

// netns finds the loader's network namespace.
func (g *gatherer) netns(loader int) netnsTarget {
	if loader == 0 {
		return netnsTarget{known: true,
			label: "status's own (no loader runs: the links' namespace is unknown)"}
	}
	path := filepath.Join(procRoot, strconv.Itoa(loader), "ns", "net")
	theirs, err := os.Stat(path)
	if err != nil {
		g.unavailable(fmt.Sprintf("network namespace of the loader (pid %d): "+
			"interface names and programs attached ahead", loader), err)
		return netnsTarget{label: "unknown"}
	}
	label := fmt.Sprintf("the loader's (pid %d)", loader)
	if ours, err := os.Stat("/proc/thread-self/ns/net"); err == nil && os.SameFile(ours, theirs) {
		return netnsTarget{label: label, known: true}
	}
	return netnsTarget{path: path, label: label, known: true}
}

// links describes the link pins: interface, program, and the hook's chain
// as the kernel reports it in the links' namespace.
func (g *gatherer) links(pins []Pin, ns netnsTarget) []Link {
	if pins == nil {
		return nil // unknown
	}
	out := []Link{}
	for _, p := range pins {
		if p.link != nil {
			out = append(out, *p.link)
		}
	}
	if len(out) == 0 {
		return out
	}
	type chain struct {
		name  string
		progs []link.AttachedProgram
		err   error
	}
	chains := make([]chain, len(out))
	if ns.known {
		query := func() error {
			for i, l := range out {
				if iface, err := net.InterfaceByIndex(int(l.Ifindex)); err == nil {
					chains[i].name = iface.Name
				}
				res, err := link.QueryPrograms(link.QueryOptions{Target: int(l.Ifindex), Attach: l.attach})
				if err != nil {
					chains[i].err = err
					continue
				}
				chains[i].progs = res.Programs
			}
			return nil
		}
		var err error
		if ns.path == "" {
			err = query()
		} else {
			err = inNetns(ns.path, query)
		}
		if err != nil {
			g.unavailable("interface names and programs attached ahead ("+ns.label+" network namespace)", err)
		}
	}
	for i := range out {
		l := &out[i]
		l.Namespace = ns.label
		l.Interface = chains[i].name
		describeProg(&l.Program)
		if chains[i].err != nil {
			what := fmt.Sprintf("programs attached to %s %s", l.interfaceLabel(), l.Direction)
			g.unavailable(what, chains[i].err)
			continue
		}
		if !ns.known {
			continue
		}
		l.Position = slices.IndexFunc(chains[i].progs, func(a link.AttachedProgram) bool { return uint32(a.ID) == l.Program.ID })
		for j, a := range chains[i].progs {
			if j == l.Position {
				if id, ok := a.LinkID(); ok {
					l.Program.LinkID = uint32(id)
				}
				continue
			}
			pr := Prog{ID: uint32(a.ID)}
			if id, ok := a.LinkID(); ok {
				pr.LinkID = uint32(id)
			}
			describeProg(&pr)
			if l.Position < 0 || j < l.Position {
				l.Ahead = append(l.Ahead, pr)
			} else {
				l.Behind = append(l.Behind, pr)
			}
		}
		if l.Position < 0 {
			g.finding(fmt.Sprintf("our program %d is not attached to %s %s as seen from %s network namespace",
				l.Program.ID, l.interfaceLabel(), l.Direction, ns.label))
		}
	}
	return out
}

// inNetns runs fn on a locked OS thread inside the network namespace at
// path. The thread goes back to its own namespace afterwards; if it
// cannot, it stays locked and the runtime ends it with the goroutine.
func inNetns(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- errors.Join(ferr, fmt.Errorf("return from network namespace %s (thread discarded): %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

// hasPin reports whether the listing holds a readable map pin called name.
func hasPin(pins []Pin, name string) bool {
	return slices.ContainsFunc(pins, func(p Pin) bool { return p.Name == name && p.Error == "" })
}

// policy reads the pinned info map.
func (g *gatherer) policy(dir string, pins []Pin) *Policy {
	if !hasPin(pins, bpf.DatapathMapInfo) {
		return nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapInfo), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		g.unavailable("policy in force (info map)", err)
		return nil
	}
	defer m.Close()
	var v bpf.DatapathInfoValue
	if err := m.Lookup(uint32(0), &v); err != nil {
		g.unavailable("policy in force (info map)", err)
		return nil
	}
	if v.Layout != bpf.LayoutVersion {
		g.finding(fmt.Sprintf("the info map says layout %d; this binary reads layout %d", v.Layout, bpf.LayoutVersion))
	}
	if v.Generation == 0 {
		g.finding("the info map holds generation 0: no policy was ever applied to these maps")
	}
	p := &Policy{Generation: v.Generation, SetSHA256: hex.EncodeToString(v.SetHash[:]), Layout: v.Layout}
	if hc := g.halfInForce(dir, pins); hc != nil {
		p.Mode, p.Governed = "enforce", []string{}
		if hc.Monitor != 0 {
			p.Mode = "monitor"
			g.finding("MONITOR MODE: the host is not segmented; packets the policy denies pass, counted and audited as would-be denials")
		}
		for i, d := range []string{"ingress", "egress"} {
			if hc.Governed[i] != 0 {
				p.Governed = append(p.Governed, d)
			}
		}
		if len(p.Governed) == 0 && v.Generation > 0 {
			g.finding("NOTHING IS FILTERED: no policy in force governs ingress or egress of this host, so every packet passes; check the policy files and --labels")
		}
	}
	return p
}

// halfInForce reads the configuration of the half in force: whether it
// enforces or only monitors, and the directions its policies govern.
func (g *gatherer) halfInForce(dir string, pins []Pin) *bpf.DatapathHalfConfig {
	if !hasPin(pins, bpf.DatapathMapSelector) || !hasPin(pins, bpf.DatapathMapHalves) {
		return nil
	}
	sel, err1 := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapSelector), &ebpf.LoadPinOptions{ReadOnly: true})
	halves, err2 := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapHalves), &ebpf.LoadPinOptions{ReadOnly: true})
	var s bpf.DatapathSelectorValue
	var hc bpf.DatapathHalfConfig
	err := errors.Join(err1, err2)
	if err == nil {
		err = sel.Lookup(uint32(0), &s)
	}
	if err == nil {
		err = halves.Lookup(s.Active&1, &hc)
	}
	for _, m := range []*ebpf.Map{sel, halves} {
		if m != nil {
			m.Close()
		}
	}
	if err != nil {
		g.unavailable("enforcement mode and governed directions (selector and halves)", err)
		return nil
	}
	return &hc
}

// counters reads the pinned per-CPU counters.
func (g *gatherer) counters(dir string, pins []Pin) *Counters {
	if !hasPin(pins, bpf.DatapathMapCounters) {
		return nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapCounters), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		g.unavailable("datapath counters", err)
		return nil
	}
	defer m.Close()
	read := func(slot uint32) (bpf.DatapathCounter, error) {
		var per []bpf.DatapathCounter
		var sum bpf.DatapathCounter
		if err := m.Lookup(slot, &per); err != nil {
			return sum, err
		}
		for _, c := range per {
			sum.Packets += c.Packets
			sum.Bytes += c.Bytes
		}
		return sum, nil
	}
	c := &Counters{Drops: map[string]uint64{}}
	var errs []error
	for dir, v := range []*Verdicts{&c.Ingress, &c.Egress} {
		allow, err := read(bpf.CounterVerdict(dir, false))
		errs = append(errs, err)
		deny, err := read(bpf.CounterVerdict(dir, true))
		errs = append(errs, err)
		would, err := read(bpf.CounterMonitor(dir))
		errs = append(errs, err)
		*v = Verdicts{AllowPackets: allow.Packets, AllowBytes: allow.Bytes, DenyPackets: deny.Packets, DenyBytes: deny.Bytes,
			WouldDenyPackets: would.Packets, WouldDenyBytes: would.Bytes}
	}
	for _, r := range bpf.Reasons {
		d, err := read(bpf.CounterReason(r))
		errs = append(errs, err)
		c.Drops[bpf.ReasonName(r)] = d.Packets
	}
	lost, err := read(bpf.CounterEventsLost)
	errs = append(errs, err)
	c.EventsLost = lost.Packets
	if err := errors.Join(errs...); err != nil {
		g.unavailable("datapath counters", err)
		return nil
	}
	return c
}

// conntrack counts the flows tracked now.
func (g *gatherer) conntrack(dir string, pins []Pin) *Conntrack {
	if !hasPin(pins, bpf.DatapathMapConntrack) {
		return nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapConntrack), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		g.unavailable("connection tracking", err)
		return nil
	}
	defer m.Close()
	c := &Conntrack{Capacity: int(m.MaxEntries())}
	var k bpf.DatapathCtKey
	var v bpf.DatapathCtValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		c.Entries++
	}
	if err := it.Err(); err != nil {
		g.unavailable("connection tracking", err)
		return nil
	}
	return c
}

// policyHits reads the match counters of the half in force, one per
// policy of the set there (the counters are zeroed when a half is
// written): nil when no policy is in force.
func (g *gatherer) policyHits(dir string, pins []Pin, in *Policy) []PolicyHit {
	if in == nil || !hasPin(pins, bpf.DatapathMapPolicyHits) || !hasPin(pins, bpf.DatapathMapSelector) {
		return nil
	}
	sel, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapSelector), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		g.unavailable("policy match counters", err)
		return nil
	}
	var s bpf.DatapathSelectorValue
	err = sel.Lookup(uint32(0), &s)
	sel.Close()
	m, err2 := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.DatapathMapPolicyHits), &ebpf.LoadPinOptions{ReadOnly: true})
	if err := errors.Join(err, err2); err != nil {
		g.unavailable("policy match counters", err)
		return nil
	}
	defer m.Close()
	out := []PolicyHit{}
	for i := range bpf.MaxPolicies {
		var per []bpf.DatapathPolicyHit
		if err := m.Lookup(uint32(int(s.Active&1)*bpf.MaxPolicies+i), &per); err != nil {
			g.unavailable("policy match counters", err)
			return nil
		}
		packets, last, ok := bpf.SumPolicyHit(per)
		if packets == 0 {
			continue
		}
		h := PolicyHit{Index: i, Packets: packets}
		if ok {
			last = last.UTC()
			h.LastHit = &last
		}
		out = append(out, h)
	}
	return out
}
