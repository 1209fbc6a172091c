package loader

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MinKernel is the oldest kernel with tcx.
var MinKernel = [2]int{6, 6}

// checkKernel refuses kernels without tcx, naming both versions.
func checkKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("read kernel version: %w", err)
	}
	return checkRelease(unix.ByteSliceToString(u.Release[:]))
}

func checkRelease(release string) error {
	major, minor, err := parseRelease(release)
	if err != nil {
		return err
	}
	if major < MinKernel[0] || (major == MinKernel[0] && minor < MinKernel[1]) {
		return fmt.Errorf("kernel %s is too old: pci-segment needs Linux %d.%d or newer for tcx attachment", release, MinKernel[0], MinKernel[1])
	}
	return nil
}

func parseRelease(r string) (int, int, error) {
	parts := strings.SplitN(r, ".", 3)
	if len(parts) < 2 {
		return 0, 0, fmt.Errorf("parse kernel release %q", r)
	}
	major, err1 := strconv.Atoi(parts[0])
	minorDigits := parts[1]
	if i := strings.IndexFunc(parts[1], func(c rune) bool { return c < '0' || c > '9' }); i >= 0 {
		minorDigits = parts[1][:i]
	}
	minor, err2 := strconv.Atoi(minorDigits)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse kernel release %q", r)
	}
	return major, minor, nil
}

// requiredCaps are what the loader uses: load and attach eBPF (BPF,
// NET_ADMIN, PERFMON for the verifier's pointer arithmetic), start the worker
// as another user with an empty bounding set (SETUID, SETGID, SETPCAP), give
// it its audit directory (CHOWN) and signal it (KILL).
var requiredCaps = []struct {
	name string
	bit  uint
}{
	{"cap_bpf", unix.CAP_BPF},
	{"cap_net_admin", unix.CAP_NET_ADMIN},
	{"cap_perfmon", unix.CAP_PERFMON},
	{"cap_setuid", unix.CAP_SETUID},
	{"cap_setgid", unix.CAP_SETGID},
	{"cap_setpcap", unix.CAP_SETPCAP},
	{"cap_chown", unix.CAP_CHOWN},
	{"cap_kill", unix.CAP_KILL},
}

// checkPrivileges refuses to run without root, or names each missing
// capability.
func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("enforce must run as root (running as uid %d): it loads eBPF programs and starts the unprivileged worker", os.Geteuid())
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	var missing []string
	for _, c := range requiredCaps {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, c.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing capabilities %s: add them to the unit's CapabilityBoundingSet (root alone is not enough when the bounding set is reduced)", strings.Join(missing, ","))
	}
	return nil
}

// guideAccount is the hardening guide's way to create the service account.
const guideAccount = `    sudo groupadd --system pci-segment || true
    sudo useradd \
      --system \
      --gid pci-segment \
      --home-dir /var/lib/pci-segment \
      --create-home \
      --shell /usr/sbin/nologin \
      pci-segment || true`

// lookupAccount resolves the worker's user and group. uid or gid 0 is
// refused: that takes an explicit override (workerAccount), because then
// only the capability drop separates the worker from root.
func lookupAccount(name, group string) (account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return account{}, fmt.Errorf("service account %q does not exist; create it once per host (see docs/HARDENING.md):\n%s", name, guideAccount)
		}
		return account{}, fmt.Errorf("look up service account %q: %w", name, err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return account{}, fmt.Errorf("service group %q does not exist; create it once per host (see docs/HARDENING.md):\n%s", group, guideAccount)
		}
		return account{}, fmt.Errorf("look up service group %q: %w", group, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(g.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return account{}, fmt.Errorf("service account %q: non-numeric uid %q or gid %q", name, u.Uid, g.Gid)
	}
	if uid == 0 || gid == 0 {
		return account{}, fmt.Errorf("service account %s:%s resolves to uid %d gid %d; the worker must not run as root unless PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1 or --allow-root is given (development only, PCI-DSS Req 2.2.4)", name, group, uid, gid)
	}
	return account{user: name, group: group, uid: uint32(uid), gid: uint32(gid)}, nil
}

// iface is an interface to enforce on.
type iface struct {
	name  string
	index int
}

// resolveInterfaces finds the named interfaces, or without names the ones
// carrying a default route.
func resolveInterfaces(names []string) ([]iface, error) {
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
	var out []iface
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
				out = append(out, iface{name: i.Name, index: i.Index})
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
