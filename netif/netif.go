// Package netif finds the network interfaces enforce attaches to: by name,
// by glob pattern, or those carrying the default routes.
package netif

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// Interface is an interface to enforce on.
type Interface struct {
	Name  string
	Index int
}

// Resolve finds the named interfaces (names or glob patterns), or without
// names the ones carrying a default route. Each must have an Ethernet
// header, which the datapath parses.
func Resolve(names []string) ([]Interface, error) {
	if len(names) == 0 {
		var err error
		names, err = defaultRouteInterfaces()
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			return nil, errors.New("no --interface given and no interface carries a default route: name the interfaces to enforce on")
		}
	}
	var out []Interface
	seen := map[int]bool{}
	for _, n := range names {
		matches := []string{n}
		if strings.ContainsAny(n, "*?[") {
			all, err := net.Interfaces()
			if err != nil {
				return nil, fmt.Errorf("list interfaces: %w", err)
			}
			matches = nil
			for _, i := range all {
				if ok, _ := filepath.Match(n, i.Name); ok {
					matches = append(matches, i.Name)
				}
			}
			if len(matches) == 0 {
				return nil, fmt.Errorf("--interface %q matches no interface", n)
			}
		}
		for _, m := range matches {
			i, err := net.InterfaceByName(m)
			if err != nil {
				return nil, fmt.Errorf("--interface %q: no such interface in this network namespace (available: %s)", m, interfaceNames())
			}
			// The datapath parses an Ethernet header; an L3 device
			// (tun, wireguard) has none.
			if len(i.HardwareAddr) != 6 && i.Flags&net.FlagLoopback == 0 {
				return nil, fmt.Errorf("--interface %q has no Ethernet header (L3 devices such as tun or wireguard are not supported yet)", m)
			}
			if !seen[i.Index] {
				seen[i.Index] = true
				out = append(out, Interface{Name: i.Name, Index: i.Index})
			}
		}
	}
	return out, nil
}

// defaultRouteInterfaces reads the kernel's routing tables for the
// interfaces of IPv4 and IPv6 default routes.
func defaultRouteInterfaces() ([]string, error) {
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "lo" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	if err := scanTable("/proc/net/route", func(f []string) {
		// Iface Destination Gateway Flags ... Mask
		if len(f) >= 8 && f[1] == "00000000" && f[7] == "00000000" {
			add(f[0])
		}
	}); err != nil {
		return nil, err
	}
	if err := scanTable("/proc/net/ipv6_route", func(f []string) {
		// dest destlen src srclen nexthop metric ref use flags iface
		if len(f) >= 10 && f[0] == strings.Repeat("0", 32) && f[1] == "00" {
			add(f[9])
		}
	}); err != nil {
		return nil, err
	}
	return names, nil
}

func scanTable(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fn(strings.Fields(s.Text()))
	}
	return s.Err()
}

func interfaceNames() string {
	all, err := net.Interfaces()
	if err != nil {
		return "unknown: " + err.Error()
	}
	names := make([]string, len(all))
	for i, f := range all {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}
