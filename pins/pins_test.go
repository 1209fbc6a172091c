package pins

import "testing"

func TestLinkNamesReadBack(t *testing.T) {
	for _, dir := range []string{"ingress", "egress"} {
		if i, d, ok := ParseLinkName(LinkName(42, dir)); !ok || i != 42 || d != dir {
			t.Errorf("ParseLinkName(LinkName(42, %s)) = %d, %s, %v", dir, i, d, ok)
		}
	}
	for _, bad := range []string{"addr4", "link_x_ingress", "link_3", "link_3_sideways", "lnk_3_egress"} {
		if _, _, ok := ParseLinkName(bad); ok {
			t.Errorf("ParseLinkName(%q) accepted", bad)
		}
	}
}
