package loader

import (
	"errors"
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/ipc"
	"github.com/pci-segment/pci-segment/netif"
	"github.com/pci-segment/pci-segment/pins"
)

// watchLinks signals on the returned channel when interfaces or routes
// change (the rtnetlink groups for links and IPv4 and IPv6 routes),
// coalesced. The messages are not parsed: any change is a reason to
// resolve --interface again from the kernel's own view.
func watchLinks(log hclog.Logger) (<-chan struct{}, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			// ENOBUFS: the kernel dropped messages; a change happened.
			if _, _, err := unix.Recvfrom(fd, buf, 0); err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EINTR) {
				log.Error("interface changes are no longer followed", "error", err)
				return
			}
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}()
	return c, nil
}

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
