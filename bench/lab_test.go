package bench

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/lab"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

// The lab's configurations: what filters the host end of the veth on
// ingress.
const (
	cfgNone     = "none"       // nothing
	cfgOurs     = "ours"       // the datapath's tcx programs
	cfgNftSet   = "nft-set"    // nftables, an interval set, no conntrack
	cfgNftSetCt = "nft-set-ct" // the same after an established,related rule
)

// labConfigs in the order each round of the benchmark visits them.
var labConfigs = []string{cfgNone, cfgOurs, cfgNftSet, cfgNftSetCt}

// labPrefixes is the size of the policy every filter enforces.
const labPrefixes = 10_000

// enforcers holds the three filters of one lab, each set up once, and
// switches between them cheaply: ours by attaching and closing its tcx
// links (the maps keep the policy written), nftables by adding and
// deleting the base chain (the table keeps the set loaded).
type enforcers struct {
	l     *lab.Lab
	objs  *bpf.DatapathObjects
	links []link.Link
	on    string
}

// newEnforcers loads the datapath with the Allowlist policy of n prefixes
// (the peer's subnet first) and the nftables table with the same prefixes,
// neither enforcing yet.
func newEnforcers(tb testing.TB, l *lab.Lab, n int) *enforcers {
	tb.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		testenv.Unavailable(tb, "the lab comparison needs nft (Debian package nftables): "+err.Error())
	}
	e := &enforcers{l: l, on: cfgNone}

	yaml := Allowlist(n, false, l.Net4)
	pols, err := policy.Parse("bench.yaml", yaml)
	if err != nil {
		tb.Fatal(err)
	}
	set := &policy.Set{Policies: pols, Hash: sha256.Sum256(yaml)}
	c, err := policy.Compile(set, nil)
	if err != nil {
		tb.Fatal(err)
	}
	sizes := bpf.Sizes{Prefixes: max(len(c.Addrs), n) + 1024, PortEntries: len(c.Ports) + 1024, Flows: bpf.DefaultSizes.Flows}
	if e.objs, err = bpf.LoadWithSizes(sizes); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		e.detachOurs()
		e.objs.Close()
	})
	if err := datapath.Writer(e.objs.All()).Apply(c, 1, set.Hash); err != nil {
		tb.Fatalf("apply the %d-prefix policy: %v", n, err)
	}

	script, err := NftSetScript(Prefixes(n, false, l.Net4))
	if err != nil {
		tb.Fatal(err)
	}
	if err := e.nft(script); err != nil {
		tb.Fatal(err)
	}
	return e
}

// use makes cfg the only filter on the host's veth.
func (e *enforcers) use(tb testing.TB, cfg string) {
	tb.Helper()
	if cfg == e.on {
		return
	}
	switch e.on {
	case cfgOurs:
		e.detachOurs()
	case cfgNftSet, cfgNftSetCt:
		if err := e.nft(NftChainDeleteScript(false)); err != nil {
			tb.Fatal(err)
		}
	}
	e.on = cfgNone
	var err error
	switch cfg {
	case cfgNone:
	case cfgOurs:
		err = e.attachOurs()
	case cfgNftSet, cfgNftSetCt:
		err = e.nft(NftChainScript(false, cfg == cfgNftSetCt))
	default:
		err = fmt.Errorf("unknown configuration %q", cfg)
	}
	if err != nil {
		tb.Fatalf("configuration %s: %v", cfg, err)
	}
	e.on = cfg
}

// attachOurs puts both programs at the head of the host veth's tcx chains,
// as the agent does, from a thread inside the host namespace (ifindexes
// are per namespace).
func (e *enforcers) attachOurs() error {
	return e.l.Do(e.l.HostNS, func() error {
		for _, a := range []struct {
			prog *ebpf.Program
			typ  ebpf.AttachType
		}{
			{e.objs.PciIngress, ebpf.AttachTCXIngress},
			{e.objs.PciEgress, ebpf.AttachTCXEgress},
		} {
			k, err := link.AttachTCX(link.TCXOptions{Interface: e.l.HostIfIndex, Program: a.prog, Attach: a.typ, Anchor: link.Head()})
			if err != nil {
				return fmt.Errorf("attach to %s: %w", e.l.HostIf, err)
			}
			e.links = append(e.links, k)
		}
		return nil
	})
}

// detachOurs closes the links, which detaches them (they are not pinned).
func (e *enforcers) detachOurs() {
	for _, k := range e.links {
		k.Close()
	}
	e.links = nil
}

// nft runs an nft script in the host namespace.
func (e *enforcers) nft(script string) error {
	cmd := e.l.Command(e.l.HostNS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(script, "\n")
		return fmt.Errorf("nft -f - (%s ...): %w\n%s", first, err, bytes.TrimSpace(out))
	}
	return nil
}

// TestLabFiltersAreTheSamePolicy: ours, nft-set and nft-set-ct, loaded as
// the benchmark loads them, let the peer's allowed address reach Port over
// TCP and UDP and drop a source outside the policy and the allowed source
// to another port; with no filter all of it gets through, so the drops are
// the filters'. The lab compares one policy under three enforcers.
func TestLabFiltersAreTheSamePolicy(t *testing.T) {
	l := lab.New(t)
	e := newEnforcers(t, l, labPrefixes)

	const otherPort = Port + 1
	for _, p := range []uint16{Port, otherPort} {
		to := netip.AddrPortFrom(l.Host4, p)
		if _, err := l.ListenTCP(l.HostNS, to); err != nil {
			t.Fatal(err)
		}
		if _, err := l.ServeUDPEcho(l.HostNS, to); err != nil {
			t.Fatal(err)
		}
	}
	// A dropped packet is one not answered in this time; on a veth an
	// answer takes well under a millisecond.
	const wait = time.Second
	type flow struct {
		what string
		from netip.Addr
		port uint16
	}
	flows := []struct {
		flow
		allowed bool
	}{
		{flow{"the peer's allowed address to the policy's port", l.Peer4, Port}, true},
		{flow{"a source outside the policy to the policy's port", l.PeerOutside4, Port}, false},
		{flow{"the peer's allowed address to another port", l.Peer4, otherPort}, false},
	}
	for _, cfg := range labConfigs {
		t.Run(cfg, func(t *testing.T) {
			e.use(t, cfg)
			for _, f := range flows {
				to := netip.AddrPortFrom(l.Host4, f.port)
				want := f.allowed || cfg == cfgNone
				for proto, err := range map[string]error{
					"tcp": l.DialTCP(l.PeerNS, f.from, to, wait),
					"udp": l.UDPExchange(l.PeerNS, f.from, to, wait),
				} {
					switch {
					case want && err != nil:
						t.Errorf("%s, %s from %s: want through, got %v", f.what, proto, f.from, err)
					case !want && err == nil:
						t.Errorf("%s, %s from %s: got through, want dropped", f.what, proto, f.from)
					case !want && !errors.Is(err, lab.ErrTimeout):
						t.Errorf("%s, %s from %s: want dropped (no answer), got %v", f.what, proto, f.from, err)
					}
				}
			}
		})
	}
}

// Lab benchmark parameters: every run of every configuration is one UDP
// and one TCP test of labSeconds; labRounds rounds visit the configurations
// in turn.
const (
	labRounds  = 10
	labSeconds = 4
)

// BenchmarkLab measures the rates over the lab's veth, iperf3 from the
// peer to the host, under each configuration: 64-byte UDP packets per
// second and TCP bits per second, as the receiver counts them. It ignores
// b.N: run it with -benchtime 1x.
func BenchmarkLab(b *testing.B) {
	iperf, err := exec.LookPath("iperf3")
	if err != nil {
		testenv.Unavailable(b, "the lab benchmark needs iperf3 (Debian package iperf3): "+err.Error())
	}
	version := "iperf3"
	if out, err := exec.Command(iperf, "--version").Output(); err == nil {
		version, _, _ = strings.Cut(string(out), " (")
	}
	l := lab.New(b)
	e := newEnforcers(b, l, labPrefixes)

	// Two CPUs or more: the client (and the softirq work of its packets,
	// which the veth delivers on the sending CPU) on one, the server on
	// another, so that the two do not compete and the scheduler does not
	// move them between runs.
	pin := runtime.NumCPU() >= 2
	iperfServer(b, l, pin)

	client := func(udp bool, secs int) (float64, error) {
		args := []string{"-c", l.Host4.String(), "-B", l.Peer4.String(), "-p", strconv.Itoa(Port),
			"-t", strconv.Itoa(secs), "--json", "--get-server-output", "--connect-timeout", "2000"}
		if udp {
			// Socket buffers of 4 MiB: a receiver that falls behind for a
			// moment would drop from a full queue, and the rate would then
			// be its scheduling's, not the path's that the filter is on.
			args = append(args, "-u", "-l", "64", "-b", "0", "-w", "4M")
		}
		if pin {
			args = append(args, "-A", "0")
		}
		cmd := l.Command(l.PeerNS, iperf, args...)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			return 0, fmt.Errorf("start iperf3 client: %w", err)
		}
		// A client whose server hangs is stopped (nsenter execs iperf3, so
		// the pid is the client's).
		stop := time.AfterFunc(time.Duration(secs+20)*time.Second, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		stop.Stop()
		rate, perr := receiverRate(out.Bytes(), udp)
		if perr != nil {
			return 0, fmt.Errorf("iperf3 %s: %w (exit: %v)", strings.Join(args, " "), perr, err)
		}
		return rate, nil
	}

	// One short round first: every configuration passes the traffic it
	// will be measured with, and nothing measured is a cold start.
	for _, cfg := range labConfigs {
		e.use(b, cfg)
		for _, udp := range []bool{true, false} {
			if _, err := client(udp, 1); err != nil {
				b.Fatalf("warm-up, %s: %v", cfg, err)
			}
		}
	}

	udpRuns := map[string][]float64{}
	tcpRuns := map[string][]float64{}
	for round := range labRounds {
		for _, cfg := range labConfigs {
			e.use(b, cfg)
			pps, err := client(true, labSeconds)
			if err != nil {
				b.Fatalf("round %d, %s, udp: %v", round, cfg, err)
			}
			bps, err := client(false, labSeconds)
			if err != nil {
				b.Fatalf("round %d, %s, tcp: %v", round, cfg, err)
			}
			udpRuns[cfg] = append(udpRuns[cfg], pps)
			tcpRuns[cfg] = append(tcpRuns[cfg], bps)
		}
	}
	e.use(b, cfgNone)

	pinning := "not pinned (one CPU)"
	if pin {
		pinning = "client pinned to CPU 0 (-A 0), server to CPU 1 (-A 1)"
	}
	common := fmt.Sprintf("%s between two network namespaces over a veth, server in the host namespace, client in the peer's; "+
		"filter on the host veth: none; ours (both tcx programs at the head of the veth's chains, %d-prefix Allowlist policy); "+
		"nft-set (ip table, prerouting filter chain, policy drop, interval set of the same %d prefixes, "+
		"`ip saddr @allow meta l4proto {tcp, udp} th dport %d accept`, no conntrack); nft-set-ct (the same after `ct state established,related accept`). "+
		"%d rounds, each visiting none, ours, nft-set, nft-set-ct in turn (one UDP and one TCP test each), after one 1 s warm-up round; "+
		"configurations are switched by attaching and closing the tcx links and by adding and deleting the nft chain (maps and set stay loaded); %s.",
		version, labPrefixes, labPrefixes, Port, labRounds, pinning)
	udpMethod := fmt.Sprintf("iperf3 -u -l 64 -b 0 -w 4M -t %d --get-server-output (one stream): packets the receiver got (packets less lost) per second of its run; "+
		"4 MiB socket buffers keep the receiver from dropping, so the rate is that of the sending CPU, which also runs the filter (the veth delivers on it). ", labSeconds) + common
	tcpMethod := fmt.Sprintf("iperf3 -t %d --get-server-output (one stream): the receiver's bits per second. ", labSeconds) + common

	var results []Result
	for _, cfg := range labConfigs {
		params := map[string]string{"config": cfg}
		if cfg != cfgNone {
			params["prefixes"] = strconv.Itoa(labPrefixes)
		}
		results = append(results,
			Result{Suite: SuiteLab, Name: "udp64", Params: params, Unit: "packets/s", Runs: udpRuns[cfg], Method: udpMethod},
			Result{Suite: SuiteLab, Name: "tcp", Params: params, Unit: "bits/s", Runs: tcpRuns[cfg], Method: tcpMethod})
	}
	Record(b, "lab", results...)
}

// iperfServer starts an iperf3 server on the host's address in the host
// namespace, waits until it listens, and stops it at cleanup (before the
// lab's namespaces go).
func iperfServer(tb testing.TB, l *lab.Lab, pin bool) {
	tb.Helper()
	args := []string{"-s", "-B", l.Host4.String(), "-p", strconv.Itoa(Port), "--json"}
	if pin {
		args = append(args, "-A", "1")
	}
	cmd := l.Command(l.HostNS, "iperf3", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start iperf3 server: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := l.Command(l.HostNS, "ss", "-Hltn", "sport = :"+strconv.Itoa(Port)).Output()
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("iperf3 server not listening on port %d after 5 s: %v\n%s", Port, err, stderr.Bytes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// receiverRate reads the receiver's side of an iperf3 client's --json
// --get-server-output report: for UDP, the packets it got per second (its
// "packets" counts up to the highest sequence number seen, so the lost
// ones come off), for TCP its bits per second.
func receiverRate(out []byte, udp bool) (float64, error) {
	var r struct {
		Error  string `json:"error"`
		Server struct {
			End struct {
				Received struct {
					Seconds       float64 `json:"seconds"`
					Packets       float64 `json:"packets"`
					LostPackets   float64 `json:"lost_packets"`
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		} `json:"server_output_json"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("read --json output: %w", err)
	}
	if r.Error != "" {
		return 0, errors.New(r.Error)
	}
	rx := r.Server.End.Received
	var rate float64
	if udp {
		if rx.Seconds > 0 {
			rate = (rx.Packets - rx.LostPackets) / rx.Seconds
		}
	} else {
		rate = rx.BitsPerSecond
	}
	if rate <= 0 {
		return 0, errors.New("no receiver report, or nothing received (server_output_json.end.sum_received)")
	}
	return rate, nil
}
