package privilege

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// guideAccount is the hardening guide's way to create the service account.
const guideAccount = `    sudo groupadd --system pci-segment || true
    sudo useradd \
      --system \
      --gid pci-segment \
      --home-dir /var/lib/pci-segment \
      --create-home \
      --shell /usr/sbin/nologin \
      pci-segment || true`

// LookupAccount resolves a service account, name and group, to the
// identity a process started as it carries: uid, gid and exactly the
// account's supplementary groups, as initgroups (and so `id` and systemd's
// User=) gives them. uid, gid or a group 0 is refused: running a worker
// as root takes an explicit override, because then only the capability
// drop separates it from root.
func LookupAccount(name, group string) (Identity, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return Identity{}, fmt.Errorf("service account %q does not exist; create it once per host (see docs/HARDENING.md):\n%s", name, guideAccount)
		}
		return Identity{}, fmt.Errorf("look up service account %q: %w", name, err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return Identity{}, fmt.Errorf("service group %q does not exist; create it once per host (see docs/HARDENING.md):\n%s", group, guideAccount)
		}
		return Identity{}, fmt.Errorf("look up service group %q: %w", group, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(g.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return Identity{}, fmt.Errorf("service account %q: non-numeric uid %q or gid %q", name, u.Uid, g.Gid)
	}
	if uid == 0 || gid == 0 {
		return Identity{}, fmt.Errorf("service account %s:%s resolves to uid %d gid %d; the worker must not run as root unless PCI_SEGMENT_SKIP_PRIVILEGE_DROP=1 or --allow-root is given (development only, PCI-DSS Req 2.2.4)", name, group, uid, gid)
	}
	var groups []uint32
	ids, err := u.GroupIds()
	if err != nil {
		return Identity{}, fmt.Errorf("list groups of service account %q: %w", name, err)
	}
	for _, id := range ids {
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return Identity{}, fmt.Errorf("service account %q: non-numeric group id %q", name, id)
		}
		if n == 0 {
			return Identity{}, fmt.Errorf("service account %q is a member of group 0; the worker must hold no root group", name)
		}
		groups = append(groups, uint32(n))
	}
	return Identity{UID: uint32(uid), GID: uint32(gid), Groups: groups}, nil
}
