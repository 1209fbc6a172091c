package loader

import (
	"net"
	"os"
	"path/filepath"

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

func (f *follower) follow() []ipc.Event {
	var events []ipc.Event
	now, err := netif.Resolve(f.cfg.Interfaces)
	if err != nil {
		f.log.Debug("no interface to add", "reason", err)
	}
	var fresh []netif.Interface
	for _, i := range now {
		if _, ok := f.attached[i.Index]; !ok {
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
		if _, err := net.InterfaceByIndex(index); err == nil {
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
