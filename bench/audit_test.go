package bench

import (
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/audit"
)

// BenchmarkAudit is the audit log's sustained records per second, as the
// worker writes denied packets: chained, sealed every epoch, with batched
// fsync, through the writer's public API into a fresh directory per run.
func BenchmarkAudit(b *testing.B) {
	const (
		runs    = 9
		records = 200_000
	)
	r := audit.Record{Type: audit.TypePacketDenied, Outcome: "deny", Who: "10.0.0.1", Resource: "10.0.0.2:22",
		Details: map[string]any{"direction": "ingress", "protocol": "TCP", "sport": 40000, "dport": 22, "reason": "no_rule"}}
	var rates []float64
	for range runs {
		key, err := audit.NewKey()
		if err != nil {
			b.Fatal(err)
		}
		w, err := audit.Open(b.TempDir(), b.TempDir(), "c0ffee", key, audit.Options{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for range records {
			if err := w.Write(r); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Close(); err != nil { // the last batch synced
			b.Fatal(err)
		}
		rates = append(rates, records/time.Since(start).Seconds())
	}
	Record(b, "audit", Result{Suite: SuiteAudit, Name: "records", Unit: "records/s", Runs: rates,
		Method: "audit.Writer, 200,000 packet_denied records per run into a fresh directory, chained and sealed, batched fsync, closed (synced) in the timing; 9 runs"})
}
