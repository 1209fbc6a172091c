package bench

import (
	"errors"
	"fmt"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/testenv"
)

// The verdict benchmark's shape. Each run is one BPF_PROG_TEST_RUN of
// verdictRepeat packets (fewer for long scans), timed by the kernel.
const (
	verdictRuns   = 31
	verdictRepeat = 100_000
)

var (
	verdictPrefixes = []int{10, 1_000, 10_000, 100_000}
	// Rule counts tried for the linear scan; the verifier refuses the
	// larger ones (on 6.18: from 4096 on, "sequence of 8193 jumps is too
	// complex"), and the benchmark records only those that load.
	linearSizes = []int{16, 64, 256, 1024, 2048, 4096, 16384}
)

func family(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// otherAddr and otherPort are the allowed packet with the peer, or the
// port, changed to one that no program allows.
func otherAddr(p bpf.Packet) bpf.Packet {
	if p.Src.Is4() {
		p.Src = OtherAddr4
	} else {
		p.Src = OtherAddr6
	}
	return p
}

func otherPort(p bpf.Packet) bpf.Packet {
	p.Dport = Port + 1
	return p
}

// expect runs each packet through prog once and checks the verdict.
func expect(t *testing.T, what string, prog *ebpf.Program, cases verdicts) {
	t.Helper()
	for name, c := range cases {
		ret, err := Run(prog, c.p.Frame())
		if err != nil {
			t.Fatalf("%s, %s: %v", what, name, err)
		}
		if ret != c.want {
			t.Errorf("%s, %s: returned %d, want %d", what, name, int32(ret), int32(c.want))
		}
	}
}

type verdict struct {
	p    bpf.Packet
	want uint32
}

type verdicts = map[string]verdict

// judged is the allowlist's verdict on the allowed packet and its two
// near misses.
func judged(v6 bool) verdicts {
	p := AllowedPacket(v6, NewSport)
	return verdicts{
		"allowed peer and port": {p, bpf.RetNext},
		"other address":         {otherAddr(p), bpf.RetDrop},
		"other port":            {otherPort(p), bpf.RetDrop},
	}
}

func TestEmptyProgramPasses(t *testing.T) {
	testenv.RequireRoot(t)
	l, err := LoadEmpty()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	expect(t, "empty", l.Prog, verdicts{
		"IPv4": {AllowedPacket(false, NewSport), bpf.RetNext},
		"IPv6": {AllowedPacket(true, NewSport), bpf.RetNext},
	})
}

func TestReferenceAllowsOnlyThePeerAndPort(t *testing.T) {
	testenv.RequireRoot(t)
	for _, v6 := range []bool{false, true} {
		l, err := LoadReference(Prefixes(1_000, v6, PeerPrefix(v6)), Port)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		vs := judged(v6)
		udp := AllowedPacket(v6, NewSport)
		udp.Proto = 17
		vs["UDP to the port"] = verdict{udp, bpf.RetNext}
		expect(t, "reference "+family(v6), l.Prog, vs)
	}
}

// The scan allows the peer only through its last rule, so the benchmark's
// packet is compared with every rule.
func TestLinearScanAllowsThePeerByItsLastRule(t *testing.T) {
	testenv.RequireRoot(t)
	rules := LinearRules(64)
	l, err := LoadLinear(rules)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	expect(t, "linear", l.Prog, judged(false))

	short, err := LoadLinear(rules[:len(rules)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	expect(t, "linear without its last rule", short.Prog, verdicts{
		"allowed peer and port": {AllowedPacket(false, NewSport), bpf.RetDrop},
	})
}

func loadOurs(t testing.TB, n int, v6 bool) *Ours {
	t.Helper()
	testenv.RequireRoot(t)
	o, err := LoadOurs(n, v6)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// ctEntries counts the datapath's connection-tracking entries.
func ctEntries(t *testing.T, o *Ours) int {
	t.Helper()
	var (
		k bpf.DatapathCtKey
		v bpf.DatapathCtValue
		n int
	)
	it := o.Objs.Conntrack.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// The new flow is judged by the rules every time and the established one
// by connection tracking every time: repeated runs (as the benchmark does
// them) neither open the new flow nor change the established one's state.
func TestOursTakesTheMeasuredPaths(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		o := loadOurs(t, 1_000, v6)
		if n := ctEntries(t, o); n != 2 {
			t.Fatalf("%s: %d conntrack entries after the opening packet, want the flow's 2", family(v6), n)
		}
		if err := o.VerifyPaths(); err != nil {
			t.Fatalf("%s: %v", family(v6), err)
		}
		expect(t, "ours "+family(v6)+" check program", o.Check, judged(v6))
		for _, s := range []struct {
			prog  *ebpf.Program
			frame []byte
		}{{o.Check, o.NewFrame()}, {o.Objs.PciIngress, o.EstablishedFrame()}} {
			if ret, _, err := s.prog.Benchmark(s.frame, 1000, nil); err != nil || ret != bpf.RetNext {
				t.Fatalf("%s: returned %d, err %v", family(v6), int32(ret), err)
			}
		}
		if n := ctEntries(t, o); n != 2 {
			t.Errorf("%s: %d conntrack entries after the repeated runs, want 2: a new-flow "+
				"packet opened its flow, so its later runs measured connection tracking", family(v6), n)
		}
		if err := o.VerifyPaths(); err != nil {
			t.Errorf("%s, after the repeated runs: %v", family(v6), err)
		}
	}
}

// The check program is the twin bpf.LoadTwin would load: same verdicts.
func TestOursCheckIsTheTwin(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		o := loadOurs(t, 10, v6)
		twin, err := bpf.LoadTwin(&o.Objs.DatapathMaps)
		if err != nil {
			t.Fatal(err)
		}
		defer twin.Close()
		for name, c := range judged(v6) {
			allow, err := twin.Verdict(false, c.p)
			if err != nil {
				t.Fatal(err)
			}
			ret, err := Run(o.Check, c.p.Frame())
			if err != nil {
				t.Fatal(err)
			}
			if allow != (ret == bpf.RetNext) {
				t.Errorf("%s, %s: twin allow=%v, check program returned %d", family(v6), name, allow, int32(ret))
			}
		}
	}
}

type verdictCase struct {
	Result
	prog   *ebpf.Program
	frame  []byte
	want   uint32
	repeat int
	path   string // for Method
}

// BenchmarkVerdict measures what one packet's verdict costs, as the kernel
// times it (BPF_PROG_TEST_RUN with repeat): the empty program, the
// reference lookup, ours on a new and on an established flow, and the
// linear scan. All configurations are loaded first, then measured
// round-robin, verdictRuns times each, so that drift in CPU steal hits all
// alike. Every run checks the verdict: a program that answered otherwise
// would be measuring another path. It ignores b.N: run it with
// -benchtime 1x.
func BenchmarkVerdict(b *testing.B) {
	testenv.RequireRoot(b)
	var cases []*verdictCase
	add := func(name string, params map[string]string, prog *ebpf.Program, frame []byte, want uint32, repeat int, path string) {
		cases = append(cases, &verdictCase{Result: Result{Suite: SuiteVerdict, Name: name, Params: params, Unit: "ns/packet"},
			prog: prog, frame: frame, want: want, repeat: repeat, path: path})
	}
	closeLater := func(c interface{ Close() error }) { b.Cleanup(func() { c.Close() }) }

	empty, err := LoadEmpty()
	if err != nil {
		b.Fatal(err)
	}
	closeLater(empty)
	add("empty", nil, empty.Prog, AllowedPacket(false, NewSport).Frame(), bpf.RetNext, verdictRepeat,
		"empty tcx program returning TCX_NEXT, IPv4 TCP SYN")

	var ours []*Ours
	for _, n := range verdictPrefixes {
		for _, v6 := range []bool{false, true} {
			ref, err := LoadReference(Prefixes(n, v6, PeerPrefix(v6)), Port)
			if err != nil {
				b.Fatal(err)
			}
			closeLater(ref)
			add("reference", map[string]string{"prefixes": strconv.Itoa(n), "family": family(v6)},
				ref.Prog, AllowedPacket(v6, NewSport).Frame(), bpf.RetNext, verdictRepeat,
				"reference program (direct packet access, one LPM lookup of the source, one hash lookup of protocol and port), allowed TCP SYN")

			o, err := LoadOurs(n, v6)
			if err != nil {
				b.Fatal(err)
			}
			closeLater(o)
			if err := o.VerifyPaths(); err != nil {
				b.Fatal(err)
			}
			ours = append(ours, o)
			p := func(flow string) map[string]string {
				return map[string]string{"prefixes": strconv.Itoa(n), "family": family(v6), "flow": flow}
			}
			add("ours", p("new"), o.Check, o.NewFrame(), bpf.RetNext, verdictRepeat,
				"check twin of the datapath (check_mode: no conntrack, counters or events), allowed TCP SYN judged by the rules")
			add("ours", p("established"), o.Objs.PciIngress, o.EstablishedFrame(), bpf.RetNext, verdictRepeat,
				"live datapath ingress program (not attached), packet of a flow it opened, CT_ALLOW path, counters on")
		}
	}

	var refused []string
	for _, n := range linearSizes {
		l, err := LoadLinear(LinearRules(n))
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			refused = append(refused, strconv.Itoa(n))
			b.Logf("linear scan of %d rules refused by the verifier: %v", n, err)
			continue
		} else if err != nil {
			b.Fatal(err)
		}
		closeLater(l)
		// About 2.7 ns a rule: scale the repeat so a run takes about as
		// long as the others.
		repeat := verdictRepeat
		if n > 64 {
			repeat = verdictRepeat * 64 / n
		}
		add("linear", map[string]string{"rules": strconv.Itoa(n)}, l.Prog, AllowedPacket(false, NewSport).Frame(),
			bpf.RetNext, repeat, fmt.Sprintf("linear scan of %d rules in an array map, IPv4 TCP SYN matching only the last", n))
	}
	refusedNote := ""
	if len(refused) > 0 {
		refusedNote = fmt.Sprintf("; the verifier refused %v rules", refused)
	}

	b.ResetTimer()
	for r := range verdictRuns {
		for i := range cases {
			c := cases[(i+r)%len(cases)]
			ret, d, err := c.prog.Benchmark(c.frame, c.repeat, nil)
			if err != nil {
				b.Fatalf("%s: %v", c.Key(), err)
			}
			if ret != c.want {
				b.Fatalf("%s: returned %d, want %d: not the path it is meant to measure", c.Key(), int32(ret), int32(c.want))
			}
			c.Runs = append(c.Runs, float64(d.Nanoseconds()))
		}
	}
	b.StopTimer()
	// The repeated runs left each path as it was.
	for _, o := range ours {
		if err := o.VerifyPaths(); err != nil {
			b.Fatalf("after the runs: %v", err)
		}
	}

	var results []Result
	for _, c := range cases {
		c.Method = fmt.Sprintf("BPF_PROG_TEST_RUN, repeat %d, %d runs interleaved with the other configurations, kernel-timed (whole ns); %s",
			c.repeat, verdictRuns, c.path)
		if c.Name == "linear" {
			c.Method += refusedNote
		}
		results = append(results, c.Result)
	}
	Record(b, "verdict", results...)
}
