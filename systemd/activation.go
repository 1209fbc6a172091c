// Package systemd holds the service pair (pci-segment.service and .socket),
// its sysusers.d and tmpfiles.d entries and the MAC drop-ins, and the code
// that takes what the socket unit passes.
package systemd

import (
	"errors"
	"fmt"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Listener takes the socket pci-segment.socket passes by socket
// activation, the metrics socket the worker serves on (which then opens
// none of its own), or nil when systemd passed none. One is expected, a
// listening TCP socket; the LISTEN_ variables are cleared, so that no
// child sees them.
func Listener() (*os.File, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	if len(files) > 1 {
		return nil, fmt.Errorf("systemd passed %d sockets: pci-segment.socket has one, the metrics listener", len(files))
	}
	fd := int(files[0].Fd())
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	acc, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	dom, err3 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err := errors.Join(err1, err2, err3); err != nil || typ != unix.SOCK_STREAM || acc != 1 || (dom != unix.AF_INET && dom != unix.AF_INET6) {
		return nil, fmt.Errorf("the socket systemd passed is not a listening TCP socket (%v): pci-segment.socket has one, the metrics listener", err)
	}
	return files[0], nil
}
