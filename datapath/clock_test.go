package datapath_test

import (
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/bench"
	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/testenv"
)

// The datapath stamps flows with CLOCK_MONOTONIC_COARSE, which
// bpf.DatapathTime converts back; an entry stamped by another clock (an
// earlier build's boot time, on adopted pins) lies in the future of this
// one: it counts as fresh, not expired, and its next packet restamps it.
func TestFlowsStampedByAnotherClockStayAndAreRestamped(t *testing.T) {
	testenv.RequireRoot(t)
	o, err := bench.LoadOurs(10, false)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var k bpf.DatapathCtKey
	var v bpf.DatapathCtValue
	var keys []bpf.DatapathCtKey
	for it := o.Objs.Conntrack.Iterate(); it.Next(&k, &v); {
		if at, ok := bpf.DatapathTime(v.LastSeenNs); !ok || time.Since(at) > time.Minute || time.Since(at) < -time.Second {
			t.Errorf("flow stamped %d: %v (%v), want about now", v.LastSeenNs, at, ok)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		t.Fatal("the established flow has no conntrack entry")
	}
	future := uint64(1) << 62
	for _, k := range keys {
		if err := o.Objs.Conntrack.Lookup(&k, &v); err != nil {
			t.Fatal(err)
		}
		v.LastSeenNs = future
		if err := o.Objs.Conntrack.Put(&k, &v); err != nil {
			t.Fatal(err)
		}
	}
	// Without the peer's prefix in the policy, only connection tracking
	// can let the flow through: an entry taken as expired would drop it.
	active, err := datapath.Writer(o.Objs.All()).Active()
	if err != nil {
		t.Fatal(err)
	}
	pp := bench.PeerPrefix(false)
	key := &bpf.DatapathAddr4Key{Prefixlen: 32 + uint32(pp.Bits()), Half: uint8(active), Dir: bpf.DirIngress, Addr: pp.Addr().As4()}
	if err := o.Objs.Addr4.Delete(key); err != nil {
		t.Fatal(err)
	}
	ret, err := bench.Run(o.Objs.PciIngress, o.EstablishedFrame())
	if err != nil || ret != bpf.RetNext {
		t.Fatalf("a flow stamped by another clock: %d, %v; want it to pass as established", int32(ret), err)
	}
	for _, k := range keys {
		o.Objs.Conntrack.Lookup(&k, &v)
		if v.LastSeenNs == future {
			t.Errorf("entry not restamped: still %d", v.LastSeenNs)
		}
	}
	if _, ok := bpf.DatapathTime(future); ok {
		t.Error("a time ahead of the clock converted")
	}
}
