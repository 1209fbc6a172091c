package loader

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pci-segment/pci-segment/privilege"
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
// it its audit directory (CHOWN) and signal it (KILL). Nothing else: this is
// the bounding set the hardening guide gives the unit.
var requiredCaps = []privilege.Cap{privilege.CapBPF, privilege.CapNetAdmin, privilege.CapPerfmon,
	privilege.CapSetuid, privilege.CapSetgid, privilege.CapSetpcap, privilege.CapChown, privilege.CapKill}

// checkPrivileges refuses to run without root, or names each missing
// capability.
func checkPrivileges() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("enforce must run as root (running as uid %d): it loads eBPF programs and starts the unprivileged worker", os.Geteuid())
	}
	missing, err := privilege.MissingCaps(requiredCaps)
	if err != nil {
		return err
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
	// Supplementary groups: exactly the account's, as initgroups (and
	// so `id` and systemd's User=) gives them; never the loader's.
	var groups []uint32
	ids, err := u.GroupIds()
	if err != nil {
		return account{}, fmt.Errorf("list groups of service account %q: %w", name, err)
	}
	for _, id := range ids {
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return account{}, fmt.Errorf("service account %q: non-numeric group id %q", name, id)
		}
		if n == 0 {
			return account{}, fmt.Errorf("service account %q is a member of group 0; the worker must hold no root group", name)
		}
		groups = append(groups, uint32(n))
	}
	return account{user: name, group: group, Identity: privilege.Identity{UID: uint32(uid), GID: uint32(gid), Groups: groups}}, nil
}
