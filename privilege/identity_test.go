package privilege

import (
	"strings"
	"testing"
)

func TestIdentityRoundTrips(t *testing.T) {
	for _, s := range []string{"997:997:", "997:998:998,4,1001", "0:0:"} {
		id, err := ParseIdentity(s)
		if err != nil {
			t.Fatalf("ParseIdentity(%q): %v", s, err)
		}
		if got := id.String(); got != s {
			t.Errorf("ParseIdentity(%q).String() = %q", s, got)
		}
	}
	for _, s := range []string{"", "997", "997:997", "a:1:", "1:-1:", "1:1:x", "1:1:2,", "1:1:2:3", "4294967296:1:"} {
		if _, err := ParseIdentity(s); err == nil {
			t.Errorf("ParseIdentity(%q) accepted", s)
		}
	}
}

func TestIdentityCheckNamesWhatDiffers(t *testing.T) {
	id := Identity{UID: 997, GID: 997, Groups: []uint32{997, 4}}
	good := ThreadState{TID: 7, UID: IDs{997, 997, 997, 997}, GID: IDs{997, 997, 997, 997}, Groups: []uint32{4, 997}}
	if err := id.Check(good); err != nil {
		t.Fatalf("Check(%+v): %v", good, err)
	}
	for _, tc := range []struct {
		name string
		edit func(*ThreadState)
		want string
	}{
		{"saved uid 0", func(t *ThreadState) { t.UID.Saved = 0 }, "uid"},
		{"fs uid other", func(t *ThreadState) { t.UID.FS = 998 }, "uid"},
		{"real gid 0", func(t *ThreadState) { t.GID.Real = 0 }, "gid"},
		{"extra group", func(t *ThreadState) { t.Groups = []uint32{4, 997, 0} }, "supplementary groups"},
		{"missing group", func(t *ThreadState) { t.Groups = []uint32{997} }, "supplementary groups"},
		{"other group", func(t *ThreadState) { t.Groups = []uint32{5, 997} }, "supplementary groups"},
	} {
		th := good
		th.Groups = append([]uint32(nil), good.Groups...)
		tc.edit(&th)
		err := id.Check(th)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "thread 7") {
			t.Errorf("%s: Check = %v, want an error about %s of thread 7", tc.name, err, tc.want)
		}
	}
}
