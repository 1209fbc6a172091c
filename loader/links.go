package loader

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf/link"
	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/netif"
	"github.com/pci-segment/pci-segment/pins"
)

// follower keeps the links in step with the interfaces --interface names
// as they come and go: a new match (a glob's, or a new default-route
// interface) is attached and pinned; an interface that is gone takes its
// links with it in the kernel, and its pins are removed. One that still
// exists but no longer matches keeps its links: removing enforcement is
// for `detach`, never a side effect.
type follower struct {
	cfg      Config
	objs     *bpf.DatapathObjects
	log      hclog.Logger
	attached map[int]string // ifindex: name
}

// enforcing lists the interfaces attached now, as link events.
func (f *follower) enforcing() []ipc.Event {
	var out []ipc.Event
	for index, name := range f.attached {
		out = append(out, ipc.Event{Kind: ipc.EventLinkAttached, Ifindex: uint32(index), Text: name})
	}
	return out
}

func (f *follower) follow() []ipc.Event {
	var events []ipc.Event
	// Each --interface on its own: one that matches nothing now must not
	// hide the others' new matches.
	var now []netif.Interface
	names := [][]string{nil}
	if len(f.cfg.Interfaces) > 0 {
		names = nil
		for _, n := range f.cfg.Interfaces {
			names = append(names, []string{n})
		}
	}
	for _, n := range names {
		found, err := netif.Resolve(n)
		if err != nil {
			f.log.Debug("no interface to add", "interface", n, "reason", err)
		}
		now = append(now, found...)
	}
	var fresh []netif.Interface
	for _, i := range now {
		if _, ok := f.attached[i.Index]; !ok && !slices.ContainsFunc(fresh, func(x netif.Interface) bool { return x.Index == i.Index }) {
			fresh = append(fresh, i)
		}
	}
	if len(fresh) > 0 {
		links, err := attach(f.objs, fresh, f.cfg.PinDir, nil)
		if err == nil {
			err = pins.Pin(f.cfg.PinDir, nil, links)
		}
		for _, l := range links {
			l.Close()
		}
		if err != nil {
			f.log.Error("attach to a new interface", "error", err)
		} else {
			for _, i := range fresh {
				f.attached[i.Index] = i.Name
				f.log.Info("enforcing on a new interface", "interface", i.Name, "ifindex", i.Index)
				events = append(events, ipc.Event{Kind: ipc.EventLinkAttached, Ifindex: uint32(i.Index), Text: i.Name})
			}
		}
	}
	for index, name := range f.attached {
		// Gone means the kernel says so; any other failure to look
		// (netlink, descriptors) leaves the links alone.
		if _, err := net.InterfaceByIndex(index); err == nil || !strings.Contains(err.Error(), "no such network interface") {
			continue
		}
		for _, dir := range []string{"ingress", "egress"} {
			os.Remove(filepath.Join(pins.LayoutDir(f.cfg.PinDir), pins.LinkName(index, dir)))
		}
		delete(f.attached, index)
		f.log.Warn("interface gone, and its links with it", "interface", name, "ifindex", index)
		events = append(events, ipc.Event{Kind: ipc.EventLinkDetached, Ifindex: uint32(index), Text: name})
	}
	return events
}

// keepStray swaps this build's programs onto an old layout's links that
// --interface no longer names but whose interface still exists, so that
// replacing the old pins never detaches them: removing enforcement is for
// `detach`. They are pinned with the rest (added to links).
func keepStray(objs *bpf.DatapathObjects, old []string, links map[string]link.Link, log hclog.Logger) error {
	for _, d := range old {
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("read old pin directory: %w", err)
		}
		for _, e := range entries {
			index, dir, ok := pins.ParseLinkName(e.Name())
			if !ok {
				continue
			}
			if _, ours := links[e.Name()]; ours {
				continue
			}
			if _, err := net.InterfaceByIndex(index); err != nil {
				continue // gone: its link went with it
			}
			prog := objs.PciIngress
			if dir == "egress" {
				prog = objs.PciEgress
			}
			l, err := pins.Swap(filepath.Join(d, e.Name()), prog)
			if err != nil {
				return err
			}
			links[e.Name()] = l
			log.Warn("kept enforcing on an interface --interface no longer names; `detach` removes it", "ifindex", index, "direction", dir)
		}
	}
	return nil
}
