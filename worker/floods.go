package worker

import (
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/audit"
	"github.com/pci-segment/pci-segment/bpf"
)

// floodWindow is how long identical denied flows are folded into one
// record: the first is written at once, the repeats within the window as
// one record with their count when it closes. A peer hammering a closed
// port costs the log two records a second, not one per packet.
const floodWindow = time.Second

// flows folds repeated denied events of one flow (the same direction,
// interface, addresses, ports, protocol, reason and mode).
type flows struct {
	mu   sync.Mutex
	open map[bpf.DatapathEvent]*flood
}

type flood struct {
	since   time.Time
	repeats int
	rec     audit.Record
}

// seen returns whether e opens a window (and so must be written now).
func (f *flows) seen(e bpf.DatapathEvent, rec audit.Record, now time.Time) bool {
	e.TimeNs, e.Len = 0, 0 // not part of the flow
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.open[e]; ok {
		fl.repeats++
		return false
	}
	if f.open == nil {
		f.open = map[bpf.DatapathEvent]*flood{}
	}
	f.open[e] = &flood{since: now, rec: rec}
	return true
}

// closed returns a record for each window that has ended with repeats.
func (f *flows) closed(now time.Time) []audit.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []audit.Record
	for e, fl := range f.open {
		if now.Sub(fl.since) < floodWindow {
			continue
		}
		delete(f.open, e)
		if fl.repeats == 0 {
			continue
		}
		rec := fl.rec
		d := make(map[string]any, len(rec.Details)+2)
		for k, v := range rec.Details {
			d[k] = v
		}
		d["repeats"], d["window_ms"] = fl.repeats, floodWindow.Milliseconds()
		delete(d, "length")
		rec.Details = d
		out = append(out, rec)
	}
	return out
}

// lossWatch turns the datapath's per-CPU count of events the ring buffer
// had no room for into gap records, so that a loss is never silent.
type lossWatch struct {
	counters *ebpf.Map
	seen     uint64
}

func (l *lossWatch) gap() (audit.Record, bool, error) {
	var per []bpf.DatapathCounter
	if err := l.counters.Lookup(uint32(bpf.CounterEventsLost), &per); err != nil {
		return audit.Record{}, false, err
	}
	var total uint64
	for _, c := range per {
		total += c.Packets
	}
	if total <= l.seen {
		return audit.Record{}, false, nil
	}
	rec := audit.Record{Type: audit.TypeEventsLost, Outcome: "failure", Who: "pci-segment datapath", Resource: "denied-packet events",
		Details: map[string]any{"count": total - l.seen, "total": total,
			"note": "the packets were dropped all the same; the ring buffer had no room for their events"}}
	l.seen = total
	return rec, true, nil
}
