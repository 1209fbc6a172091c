package netif

import (
	"errors"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Watch signals on the returned channel when interfaces or routes
// change (the rtnetlink groups for links and IPv4 and IPv6 routes),
// coalesced. The messages are not parsed: any change is a reason to
// resolve --interface again from the kernel's own view.
func Watch(log hclog.Logger) (<-chan struct{}, error) {
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
