// Command report writes BENCHMARKS.md from the results the benchmarks in
// package bench recorded: the machine, the targets with the ratios measured
// in the same run (met or missed, and by how much), then every result with
// its median, spread and method. Nothing is rounded into a pass: a target
// is judged on the medians as measured.
//
//	go run ./bench/report -in bench/results -o BENCHMARKS.md [-analysis bench/analysis.md]
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pci-segment/pci-segment/bench"
)

func main() {
	in := flag.String("in", "bench/results", "directory of results (JSON)")
	out := flag.String("o", "BENCHMARKS.md", "report to write")
	analysis := flag.String("analysis", "bench/analysis.md", "hand-written analysis to append, if it exists")
	flag.Parse()
	rs, err := bench.Read(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	var extra []byte
	if b, err := os.ReadFile(*analysis); err == nil {
		extra = b
	}
	doc := render(rs, machine(), time.Now().UTC(), extra)
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// target is one of the targets: a ratio of two medians (or one
// median against a bound) and the bound it must meet.
type target struct {
	what     string
	num, den string  // result keys; den "" compares num's median to bound
	bound    float64 // the limit
	atMost   bool    // the value must be at most bound (else at least)
	unit     string  // of the value: "x" for a ratio
	minRuns  int     // the fewest runs each side must have
}

var targets = []target{
	{what: "Established flow (conntrack hit) vs the empty program, IPv4, 10,000 prefixes",
		num: "verdict/ours{family=ipv4,flow=established,prefixes=10000}", den: "verdict/empty{}", bound: 2.0, atMost: true, unit: "x"},
	{what: "Established flow vs the empty program, IPv6, 10,000 prefixes",
		num: "verdict/ours{family=ipv6,flow=established,prefixes=10000}", den: "verdict/empty{}", bound: 2.0, atMost: true, unit: "x"},
	{what: "New flow at 10,000 prefixes vs the one-LPM-plus-hash reference at 10,000, IPv4",
		num: "verdict/ours{family=ipv4,flow=new,prefixes=10000}", den: "verdict/reference{family=ipv4,prefixes=10000}", bound: 1.5, atMost: true, unit: "x"},
	{what: "New flow at 10,000 prefixes vs the reference at 10,000, IPv6",
		num: "verdict/ours{family=ipv6,flow=new,prefixes=10000}", den: "verdict/reference{family=ipv6,prefixes=10000}", bound: 1.5, atMost: true, unit: "x"},
	{what: "New flow at 100,000 prefixes vs ours at 10 prefixes, IPv4",
		num: "verdict/ours{family=ipv4,flow=new,prefixes=100000}", den: "verdict/ours{family=ipv4,flow=new,prefixes=10}", bound: 2.2, atMost: true, unit: "x"},
	{what: "New flow at 100,000 prefixes vs ours at 10 prefixes, IPv6",
		num: "verdict/ours{family=ipv6,flow=new,prefixes=100000}", den: "verdict/ours{family=ipv6,flow=new,prefixes=10}", bound: 2.2, atMost: true, unit: "x"},
	{what: "64-byte UDP rate with 10,000 prefixes vs no filter (median of at least 8 runs)",
		num: "lab/udp64{config=ours,prefixes=10000}", den: "lab/udp64{config=none}", bound: 0.95, unit: "x", minRuns: 8},
	{what: "64-byte UDP rate, ours vs nftables interval set (same policy)",
		num: "lab/udp64{config=ours,prefixes=10000}", den: "lab/udp64{config=nft-set,prefixes=10000}", bound: 1.1, unit: "x", minRuns: 8},
	{what: "64-byte UDP rate, ours vs nftables interval set with a conntrack rule",
		num: "lab/udp64{config=ours,prefixes=10000}", den: "lab/udp64{config=nft-set-ct,prefixes=10000}", bound: 1.1, unit: "x", minRuns: 8},
	{what: "Compile, write and swap of 100,000 prefixes",
		num: "apply/compile, write and swap{prefixes=100000}", bound: 1000, atMost: true, unit: "ms"},
	{what: "Worker steady-state RSS after applying 10,000 prefixes",
		num: "memory/worker steady RSS{prefixes=10000}", bound: 40, atMost: true, unit: "MiB"},
	{what: "Loader RSS (steady state, 10,000 prefixes)",
		num: "memory/loader steady RSS{prefixes=10000}", bound: 15, atMost: true, unit: "MiB"},
	{what: "Loader peak RSS once enforcing (10,000 prefixes)",
		num: "memory/loader peak RSS{prefixes=10000}", bound: 15, atMost: true, unit: "MiB"},
}

// verdict is how a target fared.
type verdict int

const (
	met verdict = iota
	missed
	unmeasured // a side has no result
	fewRuns    // a side has fewer runs than the target asks
)

// judge evaluates t against the results by key: the value (a ratio of
// medians, or a median), the verdict, and a detail (the medians compared,
// or what is lacking).
func judge(t target, byKey map[string]bench.Result) (float64, verdict, string) {
	n, ok := byKey[t.num]
	if !ok {
		return 0, unmeasured, "no result " + t.num
	}
	value, detail := n.Median(), ""
	sides := []bench.Result{n}
	if t.den != "" {
		d, ok := byKey[t.den]
		if !ok {
			return 0, unmeasured, "no result " + t.den
		}
		value = n.Median() / d.Median()
		sides = append(sides, d)
		detail = fmt.Sprintf("%s / %s", num(n.Median(), n.Unit), num(d.Median(), d.Unit))
	}
	for _, s := range sides {
		if len(s.Runs) < t.minRuns {
			return value, fewRuns, fmt.Sprintf("%s has %d runs, fewer than the %d asked for", s.Key(), len(s.Runs), t.minRuns)
		}
	}
	if (t.atMost && value <= t.bound) || (!t.atMost && value >= t.bound) {
		return value, met, detail
	}
	return value, missed, detail
}

func render(rs []bench.Result, mach [][2]string, now time.Time, analysis []byte) string {
	byKey := map[string]bench.Result{}
	for _, r := range rs {
		byKey[r.Key()] = r
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# Benchmarks")
	p("")
	p("Written by `make bench` (`go run ./bench/report`) from the results in `bench/results/` on %s. Medians of every run, with the spread (lowest to highest); ratios are of medians measured in the same run. Live rates on this kind of machine swing by 10–20%% (CPU steal): kernel-timed figures are the firmer ones.", now.Format("2006-01-02 15:04 UTC"))
	p("")
	p("## Machine")
	p("")
	p("| | |")
	p("|---|---|")
	for _, kv := range mach {
		p("| %s | %s |", kv[0], kv[1])
	}
	p("")
	p("## Targets")
	p("")
	p("| target | measured | bound | result |")
	p("|---|---|---|---|")
	counts := map[verdict]int{}
	for _, t := range targets {
		v, verdict, detail := judge(t, byKey)
		counts[verdict]++
		bound := fmt.Sprintf("at most %s", num(t.bound, t.unit))
		if !t.atMost {
			bound = fmt.Sprintf("at least %s", num(t.bound, t.unit))
		}
		measured := num(v, t.unit)
		if t.den != "" && detail != "" && verdict != fewRuns {
			measured += " (" + detail + ")"
		}
		var res string
		switch verdict {
		case met:
			res = "met"
		case missed:
			res = "**missed** by " + by(v, t)
		case unmeasured:
			measured, res = "—", "**not measured**: "+detail
		case fewRuns:
			res = "**not judged**: " + detail
		}
		p("| %s | %s | %s | %s |", t.what, measured, bound, res)
	}
	p("")
	if counts[met] == len(targets) {
		p("All %d targets are met.", len(targets))
	} else {
		p("Of %d targets, %d are met, %d missed, %d not measured and %d not judged (too few runs) in this run. Misses are stated as measured, not redefined.",
			len(targets), counts[met], counts[missed], counts[unmeasured], counts[fewRuns])
	}
	p("")
	sections := []struct{ suite, title string }{
		{bench.SuiteVerdict, "Per-packet verdict cost (kernel-timed)"},
		{bench.SuiteLab, "Lab rates over a veth pair"},
		{bench.SuiteApply, "Policy apply latency"},
		{bench.SuiteMemory, "Memory"},
		{bench.SuiteAudit, "Audit log"},
	}
	for _, s := range sections {
		var in []bench.Result
		for _, r := range rs {
			if r.Suite == s.suite {
				in = append(in, r)
			}
		}
		p("## %s", s.title)
		p("")
		if len(in) == 0 {
			p("Not measured in this run: no results for suite %q.", s.suite)
			p("")
			continue
		}
		sort.SliceStable(in, func(i, j int) bool { return less(in[i], in[j]) })
		p("| what | parameters | median | spread | runs |")
		p("|---|---|---|---|---|")
		methods := map[string]int{}
		var order []string
		for _, r := range in {
			if _, ok := methods[r.Method]; !ok {
				methods[r.Method] = len(methods) + 1
				order = append(order, r.Method)
			}
			p("| %s [%d] | %s | %s | %s – %s | %d |", r.Name, methods[r.Method], params(r.Params),
				num(r.Median(), r.Unit), num(r.Min(), r.Unit), num(r.Max(), r.Unit), len(r.Runs))
		}
		p("")
		for i, m := range order {
			p("%d. %s", i+1, m)
		}
		p("")
	}
	if len(analysis) > 0 {
		b.Write(analysis)
	}
	return b.String()
}

// by says how far v is from t's bound.
func by(v float64, t target) string {
	gap := v - t.bound
	if !t.atMost {
		gap = t.bound - v
	}
	return fmt.Sprintf("%s (%.0f%% of the bound)", num(gap, t.unit), 100*gap/t.bound)
}

// less orders results by name, then by numeric parameters.
func less(a, b bench.Result) bool {
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	keys := map[string]bool{}
	for k := range a.Params {
		keys[k] = true
	}
	for k := range b.Params {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		x, y := a.Params[k], b.Params[k]
		if x == y {
			continue
		}
		xi, e1 := strconv.Atoi(x)
		yi, e2 := strconv.Atoi(y)
		if e1 == nil && e2 == nil {
			return xi < yi
		}
		return x < y
	}
	return false
}

func params(ps map[string]string) string {
	if len(ps) == 0 {
		return ""
	}
	var out []string
	for k, v := range ps {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// num prints v with its unit, in a way a reader compares at a glance.
func num(v float64, unit string) string {
	switch {
	case unit == "x":
		return fmt.Sprintf("%.2fx", v)
	case unit == "bits/s":
		return fmt.Sprintf("%.2f Gbit/s", v/1e9)
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%.3g M %s", v/1e6, unit)
	case math.Abs(v) >= 1e3:
		return fmt.Sprintf("%.0f %s", v, unit)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.3g %s", v, unit)
}

// machine describes where the run happened.
func machine() [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	if b, err := exec.Command("uname", "-srm").Output(); err == nil {
		add("kernel", string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		model, n, hyper := "", 0, false
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(line, ":")
			switch strings.TrimSpace(k) {
			case "model name":
				model = strings.TrimSpace(v)
				n++
			case "flags":
				hyper = hyper || strings.Contains(v, " hypervisor")
			}
		}
		cpu := fmt.Sprintf("%s, %d CPUs", model, n)
		if hyper {
			cpu += ", virtual machine (hypervisor flag)"
		}
		add("CPU", cpu)
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				add("memory", fmt.Sprintf("%.1f GiB", kb/(1<<20)))
			}
		}
	}
	if b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource"); err == nil {
		add("clock source", string(b))
	}
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		add("Debian", string(b))
	}
	add("Go", runtime.Version())
	return out
}
