// Package tcx holds the datapath programs' links: both programs at the head
// of each interface's tcx chain, one link per interface and direction,
// pinned so that enforcement outlives the processes; links pinned by an
// earlier instance keep their place and get the new program in place
// (BPF_LINK_UPDATE), also those of another layout under --replace; and the
// interfaces followed as they come and go.
//
// Removing enforcement is for `detach`, never a side effect: an interface
// that still exists but no longer matches --interface keeps its links.
package tcx

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/netif"
	"github.com/pci-segment/pci-segment/pins"
)

// Links are the datapath's links on the interfaces Names match (--interface:
// names or globs; none: the default-route interfaces).
type Links struct {
	PinDir string
	Names  []string
	Objs   *bpf.DatapathObjects
	Log    hclog.Logger

	attached map[int]string // ifindex: name
}

// Change is an interface attached or gone.
type Change struct {
	Attached bool
	Index    int
	Name     string
}

// Start attaches to ifaces, or to what Names match now when that still
// resolves, taking over the links of other layouts' pin directories
// (--replace): their connection tracking is carried over, their links on
// interfaces still present keep enforcing with this build's programs, and
// the old directories go. Maps and links are pinned. It returns the
// interfaces named.
func (l *Links) Start(ifaces []netif.Interface) ([]string, error) {
	old, err := pins.OtherLayouts(l.PinDir)
	if err != nil {
		return nil, err
	}
	for _, d := range old {
		pins.CarryConntrack(d, l.Objs.Conntrack, l.Log)
	}
	// Looked up again: the worker may have taken a while, and an
	// interface gone meanwhile must not stop the start.
	if now, err := netif.Resolve(l.Names); err == nil {
		ifaces = now
	}
	// The maps first: once a program is swapped onto an old link, what it
	// reads must be pinned, so that status, check --live and the next
	// start find it even if what follows fails.
	if err := pins.Pin(l.PinDir, l.Objs.All(), nil); err != nil {
		pins.RemoveIfEmpty(pins.LayoutDir(l.PinDir))
		return nil, err
	}
	links, err := l.attach(ifaces, old)
	if err == nil {
		err = l.keepStray(old, links)
	}
	if err == nil {
		err = pins.Pin(l.PinDir, l.Objs.All(), links)
	}
	// Pinned, the links need no descriptor here.
	for _, k := range links {
		k.Close()
	}
	if err != nil {
		pins.RemoveIfEmpty(pins.LayoutDir(l.PinDir))
		return nil, err
	}
	for _, d := range old {
		if err := pins.RemoveLayout(d, l.Log); err != nil {
			return nil, err
		}
	}
	l.attached = map[int]string{}
	names := make([]string, len(ifaces))
	for i, f := range ifaces {
		names[i] = f.Name
		l.attached[f.Index] = f.Name
	}
	for name := range links {
		if index, _, ok := pins.ParseLinkName(name); ok {
			if _, known := l.attached[index]; !known {
				l.attached[index] = fmt.Sprintf("ifindex %d", index)
			}
		}
	}
	return names, nil
}

// Attached lists the interfaces attached now, by ifindex.
func (l *Links) Attached() []Change {
	var out []Change
	for index, name := range l.attached {
		out = append(out, Change{Attached: true, Index: index, Name: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// Follow attaches to interfaces that match now and are not attached, and
// forgets those the kernel says are gone (their links went with them; their
// pins are removed). Call it after Start.
func (l *Links) Follow() []Change {
	var changes []Change
	// Each --interface on its own: one that matches nothing now must not
	// hide the others' new matches.
	var now []netif.Interface
	for _, n := range each(l.Names) {
		found, err := netif.Resolve(n)
		if err != nil {
			l.Log.Debug("no interface to add", "interface", n, "reason", err)
		}
		now = append(now, found...)
	}
	if fresh := unattached(now, l.attached); len(fresh) > 0 {
		links, err := l.attach(fresh, nil)
		if err == nil {
			err = pins.Pin(l.PinDir, nil, links)
		}
		for _, k := range links {
			k.Close()
		}
		if err != nil {
			l.Log.Error("attach to a new interface", "error", err)
		} else {
			for _, i := range fresh {
				l.attached[i.Index] = i.Name
				l.Log.Info("enforcing on a new interface", "interface", i.Name, "ifindex", i.Index)
				changes = append(changes, Change{Attached: true, Index: i.Index, Name: i.Name})
			}
		}
	}
	for index, name := range l.attached {
		if !gone(index) {
			continue
		}
		for _, dir := range []string{"ingress", "egress"} {
			os.Remove(filepath.Join(pins.LayoutDir(l.PinDir), pins.LinkName(index, dir)))
		}
		delete(l.attached, index)
		l.Log.Warn("interface gone, and its links with it", "interface", name, "ifindex", index)
		changes = append(changes, Change{Index: index, Name: name})
	}
	return changes
}

// each splits --interface into one resolution per name; none stays one
// resolution of nothing (the default-route interfaces).
func each(names []string) [][]string {
	if len(names) == 0 {
		return [][]string{nil}
	}
	out := make([][]string, len(names))
	for i, n := range names {
		out[i] = []string{n}
	}
	return out
}

// unattached is now less what is attached, each interface once.
func unattached(now []netif.Interface, attached map[int]string) []netif.Interface {
	var fresh []netif.Interface
	for _, i := range now {
		if _, ok := attached[i.Index]; !ok && !slices.ContainsFunc(fresh, func(x netif.Interface) bool { return x.Index == i.Index }) {
			fresh = append(fresh, i)
		}
	}
	return fresh
}

// gone is true only when the kernel says the interface does not exist; any
// other failure to look (netlink, descriptors) leaves its links alone.
func gone(index int) bool {
	_, err := net.InterfaceByIndex(index)
	return err != nil && strings.Contains(err.Error(), "no such network interface")
}

// attach puts both programs at the head of each interface's tcx chain and
// returns the links by pin name. A link already pinned for an interface and
// direction (adopted, or an old layout's) gets the new program in place;
// the others are created directly (BPF_LINK_CREATE with BPF_F_BEFORE and no
// anchor: the head): on failure link.AttachTCX probes the kernel by loading
// a program, which the loader's seccomp filter refuses, and would report
// "not supported" in place of the kernel's answer.
func (l *Links) attach(ifaces []netif.Interface, old []string) (map[string]link.Link, error) {
	out := map[string]link.Link{}
	for _, f := range ifaces {
		for _, a := range []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
			dir  string
		}{
			{l.Objs.PciIngress, ebpf.AttachTCXIngress, "ingress"},
			{l.Objs.PciEgress, ebpf.AttachTCXEgress, "egress"},
		} {
			var k link.Link
			var err error
			if p := pins.FindLink(l.PinDir, old, f.Index, a.dir); p != "" {
				k, err = pins.Swap(p, a.prog)
			} else if k, err = link.AttachRawLink(link.RawLinkOptions{Target: f.Index, Program: a.prog, Attach: a.typ, Flags: unix.BPF_F_BEFORE}); err != nil {
				err = fmt.Errorf("attach %s program to %s (ifindex %d): %w", a.dir, f.Name, f.Index, err)
			}
			if err != nil {
				for _, done := range out {
					done.Close()
				}
				return nil, err
			}
			out[pins.LinkName(f.Index, a.dir)] = k
		}
	}
	return out, nil
}

// keepStray swaps this build's programs onto an old layout's links that
// Names no longer match but whose interface still exists, adding them to
// links, so that replacing the old pins never detaches them.
func (l *Links) keepStray(old []string, links map[string]link.Link) error {
	for _, d := range old {
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("read old pin directory: %w", err)
		}
		for _, e := range entries {
			index, dir, ok := pins.ParseLinkName(e.Name())
			if _, ours := links[e.Name()]; !ok || ours {
				continue
			}
			if gone(index) {
				continue // its link went with it
			}
			prog := l.Objs.PciIngress
			if dir == "egress" {
				prog = l.Objs.PciEgress
			}
			k, err := pins.Swap(filepath.Join(d, e.Name()), prog)
			if err != nil {
				return err
			}
			links[e.Name()] = k
			l.Log.Warn("kept enforcing on an interface --interface no longer names; `detach` removes it", "ifindex", index, "direction", dir)
		}
	}
	return nil
}
