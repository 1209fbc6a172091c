package tcx

import (
	"reflect"
	"testing"

	"github.com/pci-segment/pci-segment/netif"
)

func TestEachResolvesEveryNameOnItsOwn(t *testing.T) {
	if got := each(nil); !reflect.DeepEqual(got, [][]string{nil}) {
		t.Errorf("each(nil) = %v, want one resolution of the default-route interfaces", got)
	}
	if got := each([]string{"eth*", "lo"}); !reflect.DeepEqual(got, [][]string{{"eth*"}, {"lo"}}) {
		t.Errorf("each = %v", got)
	}
}

func TestUnattachedListsEachNewInterfaceOnce(t *testing.T) {
	now := []netif.Interface{{Index: 2, Name: "eth0"}, {Index: 3, Name: "eth1"}, {Index: 3, Name: "eth1"}, {Index: 4, Name: "eth2"}}
	got := unattached(now, map[int]string{2: "eth0"})
	want := []netif.Interface{{Index: 3, Name: "eth1"}, {Index: 4, Name: "eth2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("unattached = %v, want %v", got, want)
	}
	if got := unattached(now[:1], map[int]string{2: "eth0"}); len(got) != 0 {
		t.Errorf("an attached interface came back as new: %v", got)
	}
}

func TestGoneOnlyWhenTheKernelSaysSo(t *testing.T) {
	if gone(1) {
		t.Error("loopback (ifindex 1) reported gone")
	}
	if !gone(1 << 30) {
		t.Error("an ifindex no interface has is not reported gone")
	}
}
