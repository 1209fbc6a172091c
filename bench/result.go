// Package bench measures pci-segment against the floor (an empty program),
// against what users would pick instead (nftables, a linear rule scan) and
// against its targets, and writes BENCHMARKS.md from what it measured.
//
// Every measurement is a Go benchmark in this package's tests, run once
// (-benchtime 1x) and repeating internally, so that each result keeps all
// of its runs: the report gives medians and spread, never one sample. With
// PCI_SEGMENT_BENCH_OUT set, each benchmark writes its results there as
// JSON; `go run ./bench/report` turns that directory into BENCHMARKS.md.
// `make bench` does both.
package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// OutEnv names the directory the benchmarks write their results to.
const OutEnv = "PCI_SEGMENT_BENCH_OUT"

// Suites, each a section of the report.
const (
	SuiteVerdict = "verdict" // per-packet cost, kernel-timed (ns/packet)
	SuiteLab     = "lab"     // rates over a veth pair
	SuiteApply   = "apply"   // policy apply latency (ms)
	SuiteMemory  = "memory"  // RSS and BPF map memory (MiB)
	SuiteAudit   = "audit"   // audit records per second
)

// Result is one measured quantity with every run's value.
type Result struct {
	Suite string `json:"suite"`
	// Name and Params identify it within the suite; the report's targets
	// look results up by them (see report/).
	Name   string            `json:"name"`
	Params map[string]string `json:"params,omitempty"`
	Unit   string            `json:"unit"`
	Runs   []float64         `json:"runs"`
	// How it was measured, for the reader: the tool, repeat counts, sizes.
	Method string `json:"method"`
}

// Median of the runs (the mean of the middle two for an even count).
func (r Result) Median() float64 {
	if len(r.Runs) == 0 {
		return 0
	}
	s := slices.Clone(r.Runs)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// Min and Max of the runs.
func (r Result) Min() float64 { return slices.Min(r.Runs) }
func (r Result) Max() float64 { return slices.Max(r.Runs) }

// Key is the result's identity: suite, name and sorted params.
func (r Result) Key() string {
	var ps []string
	for k, v := range r.Params {
		ps = append(ps, k+"="+v)
	}
	sort.Strings(ps)
	return r.Suite + "/" + r.Name + "{" + strings.Join(ps, ",") + "}"
}

// Record reports r on b (its median, as a custom metric) and, with OutEnv
// set, writes it to the results directory as file.json (one file per
// benchmark, holding all its results).
func Record(b testing.TB, file string, rs ...Result) {
	b.Helper()
	for _, r := range rs {
		if len(r.Runs) == 0 {
			b.Fatalf("%s: no runs", r.Key())
		}
		if bb, ok := b.(*testing.B); ok {
			bb.ReportMetric(r.Median(), strings.ReplaceAll(r.Name+"_"+r.Unit, " ", "_"))
		}
		b.Logf("%s: median %.4g %s (%.4g to %.4g, %d runs)", r.Key(), r.Median(), r.Unit, r.Min(), r.Max(), len(r.Runs))
	}
	dir := os.Getenv(OutEnv)
	if dir == "" {
		return
	}
	if err := Write(filepath.Join(dir, file+".json"), rs); err != nil {
		b.Fatal(err)
	}
}

// Write stores results as JSON at path.
func Write(path string, rs []Result) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Read loads every results file in dir.
func Read(dir string) ([]Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no results in %s: run the benchmarks with %s=%s", dir, OutEnv, dir)
	}
	var all []Result
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var rs []Result
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, r := range rs {
			if len(r.Runs) == 0 {
				return nil, fmt.Errorf("%s: %s has no runs", f, r.Key())
			}
		}
		all = append(all, rs...)
	}
	return all, nil
}
