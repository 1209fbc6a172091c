package worker

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/testenv"
)

func TestRepeatsOfAFlowFoldIntoOneRecordPerWindow(t *testing.T) {
	var f flows
	t0 := time.Unix(1000, 0)
	e := bpf.DatapathEvent{Dir: 0, Family: 4, Proto: 6, Sport: 1, Dport: 22, TimeNs: 1, Len: 60}
	other := e
	other.Sport = 2
	rec := audit.Record{Type: audit.TypePacketDenied, Details: map[string]any{"dport": 22, "length": 60}}
	if !f.seen(e, rec, t0) || !f.seen(other, rec, t0) {
		t.Fatal("the first packet of a flow must be written at once")
	}
	for i := range 99 {
		e.TimeNs, e.Len = uint64(i+2), uint32(i) // time and length are not the flow
		if f.seen(e, rec, t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("repeat %d opened a new record", i)
		}
	}
	if got := f.closed(t0.Add(floodWindow / 2)); len(got) != 0 {
		t.Fatalf("a window still open gave %d records", len(got))
	}
	got := f.closed(t0.Add(floodWindow))
	if len(got) != 1 || got[0].Details["repeats"] != 99 {
		t.Fatalf("closed windows gave %+v, want one record of 99 repeats (the flow sent once gives none)", got)
	}
	if _, ok := got[0].Details["length"]; ok {
		t.Error("the folded record keeps the first packet's length")
	}
	if !f.seen(e, rec, t0.Add(2*floodWindow)) {
		t.Error("after its window closed, a flow's next packet is not written at once")
	}
}

func TestLostEventsBecomeGapRecords(t *testing.T) {
	testenv.RequireRoot(t)
	counters, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer counters.Close()
	n, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	put := func(each uint64) {
		per := make([]bpf.DatapathCounter, n)
		for i := range per {
			per[i].Packets = each
		}
		if err := counters.Put(uint32(bpf.CounterEventsLost), per); err != nil {
			t.Fatal(err)
		}
	}
	l := &lossWatch{counters: counters}
	if _, ok, err := l.gap(); err != nil || ok {
		t.Fatalf("no loss: %v, %v", ok, err)
	}
	put(5)
	rec, ok, err := l.gap()
	if err != nil || !ok || rec.Type != audit.TypeEventsLost || rec.Details["count"] != uint64(5*n) {
		t.Fatalf("after %d losses: %+v %v %v", 5*n, rec, ok, err)
	}
	if _, ok, _ := l.gap(); ok {
		t.Error("the same losses made a second gap record")
	}
	put(7)
	if rec, ok, _ := l.gap(); !ok || rec.Details["count"] != uint64(2*n) || rec.Details["total"] != uint64(7*n) {
		t.Errorf("further losses: %+v", rec.Details)
	}
}
