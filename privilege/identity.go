package privilege

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Identity is who a process must be: one uid and one gid in all four of
// their fields, and exactly these supplementary groups. The loader hands
// the worker the identity it started it with, so that the worker checks
// each of its threads against that, not only against each other.
type Identity struct {
	UID, GID uint32
	Groups   []uint32
}

// String is the form ParseIdentity reads: uid:gid:group,group...
func (id Identity) String() string {
	g := make([]string, len(id.Groups))
	for i, n := range id.Groups {
		g[i] = strconv.FormatUint(uint64(n), 10)
	}
	return fmt.Sprintf("%d:%d:%s", id.UID, id.GID, strings.Join(g, ","))
}

// ParseIdentity reads uid:gid:groups, groups comma-separated and possibly
// empty.
func ParseIdentity(s string) (Identity, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Identity{}, fmt.Errorf("identity %q: want uid:gid:group,group...", s)
	}
	num := func(v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("identity %q: %q is not an id", s, v)
		}
		return uint32(n), nil
	}
	var id Identity
	var err error
	if id.UID, err = num(parts[0]); err != nil {
		return Identity{}, err
	}
	if id.GID, err = num(parts[1]); err != nil {
		return Identity{}, err
	}
	if parts[2] == "" {
		return id, nil
	}
	for _, g := range strings.Split(parts[2], ",") {
		n, err := num(g)
		if err != nil {
			return Identity{}, err
		}
		id.Groups = append(id.Groups, n)
	}
	return id, nil
}

// Check returns nil when thread t is id: every uid field id.UID, every gid
// field id.GID, and the supplementary groups id.Groups, in any order.
func (id Identity) Check(t ThreadState) error {
	all := IDs{id.UID, id.UID, id.UID, id.UID}
	if t.UID != all {
		return fmt.Errorf("thread %d: uid %+v, want %d in every field", t.TID, t.UID, id.UID)
	}
	all = IDs{id.GID, id.GID, id.GID, id.GID}
	if t.GID != all {
		return fmt.Errorf("thread %d: gid %+v, want %d in every field", t.TID, t.GID, id.GID)
	}
	if !slices.Equal(slices.Sorted(slices.Values(t.Groups)), slices.Sorted(slices.Values(id.Groups))) {
		return fmt.Errorf("thread %d: supplementary groups %v, want exactly %v", t.TID, t.Groups, id.Groups)
	}
	return nil
}
