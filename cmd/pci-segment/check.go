package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/policy"
)

// Exit codes of check.
const (
	checkAllow    = 0
	checkDeny     = 1
	checkError    = 2 // usage, unreadable policies, no live datapath
	checkDisagree = 3 // --live: the kernel and the files give different verdicts
)

type checkCmd struct {
	Files     []string `short:"f" name:"file" required:"" help:"Policy files, directories or glob patterns (repeatable)."`
	Labels    string   `help:"Labels of the host, k=v,...: they decide which policies apply."`
	Direction string   `required:"" enum:"ingress,egress" help:"ingress (the peer sends to this host) or egress (this host sends to the peer)."`
	Peer      string   `required:"" help:"The remote address, IPv4 or IPv6 (an IPv4-mapped IPv6 address is IPv6)."`
	Protocol  string   `required:"" enum:"TCP,UDP,SCTP,ICMP" help:"TCP, UDP, SCTP or ICMP (an echo request; ICMPv6 for an IPv6 peer)."`
	Port      int      `help:"Destination port, 1-65535; required for TCP, UDP and SCTP, not allowed for ICMP."`
	Output    string   `short:"o" enum:"text,json" default:"text" help:"Output format: text or json."`
	Live      bool     `help:"Also ask the loaded datapath, through the pins under --pin-dir (root)."`
	PinDir    string   `default:"/sys/fs/bpf/pci-segment" help:"bpffs directory pci-segment enforce pinned to (with --live)."`
}

// Help is the detail `check --help` shows under the one-line summary.
func (c *checkCmd) Help() string {
	return `Prints allow or deny and why: the policy, rule, peer and ports that allow the packet, or "direction not governed", or "no rule matches". The files are read as the worker reads them; --labels says which policies apply.

With --live (root) the loaded datapath judges the packet too: a twin of its program, sharing its pinned maps, with connection tracking, counters and events switched off by a load-time constant, runs a crafted packet (BPF_PROG_TEST_RUN), so nothing live changes. Both verdicts are printed.

Exit status: 0 allow, 1 deny, 2 usage or error, 3 the kernel and the files disagree (--live).`
}

// geteuid is a variable so that a test run as root can see the refusal a
// user gets.
var geteuid = os.Geteuid

// Addresses of the host in packets crafted for --live, by the peer's
// family: documentation addresses, since the datapath judges the peer only.
var (
	liveHost4 = netip.MustParseAddr("192.0.2.1")
	liveHost6 = netip.MustParseAddr("2001:db8::1")
)

// liveSport is the source port of a crafted packet: an ephemeral port, as a
// client would use.
const liveSport = 40000

// checkResult is what check prints; -o json writes it as it is.
type checkResult struct {
	Verdict string `json:"verdict"` // allow or deny
	Reason  string `json:"reason"`  // policy.Verdict.Reason
	// The rule that allows the packet; empty unless Reason is "rule matches".
	Policy string       `json:"policy,omitempty"`
	Rule   string       `json:"rule,omitempty"`
	Peer   string       `json:"peer,omitempty"`  // the rule's cidr, or "any"
	Ports  string       `json:"ports,omitempty"` // the rule's port entry, or "any"
	Source *checkSource `json:"source,omitempty"`
	Packet checkPacket  `json:"packet"`
	Kernel *checkKernel `json:"kernel,omitempty"` // with --live
	// Text is the reference verdict in one line, as text output prints it.
	Text string `json:"-"`
}

type checkSource struct {
	File     string `json:"file"`
	Document int    `json:"document"`
	Line     int    `json:"line"`
}

type checkPacket struct {
	Direction string `json:"direction"`
	Peer      string `json:"peer"`
	Protocol  string `json:"protocol"` // TCP, UDP, SCTP, ICMP or ICMPv6
	Port      uint16 `json:"port,omitempty"`
}

type checkKernel struct {
	Verdict string `json:"verdict"`
	Agrees  bool   `json:"agrees"`
	PinDir  string `json:"pin_dir"`
	// The policy in force, from the pinned info map, and whether it is the
	// set of files given (same set hash); absent when unreadable.
	Generation   *uint64 `json:"generation,omitempty"`
	SetHash      string  `json:"set_hash,omitempty"`
	FilesSetHash string  `json:"files_set_hash"`
	// ProgramDiffers lists attached programs that are not this binary's
	// (the twin then judged with this binary's code, not theirs).
	ProgramDiffers []string `json:"program_differs,omitempty"`
}

func verdictWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// run executes check, writing the verdict to stdout and problems to
// stderr, and returns the exit code.
func (c *checkCmd) run(stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "check: "+format+"\n", args...)
		return checkError
	}
	pkt, protoName, err := c.packet()
	if err != nil {
		return fail("%v", err)
	}
	labels, err := policy.ParseLabels(c.Labels)
	if err != nil {
		return fail("--labels: %v", err)
	}
	set, err := policy.Load(c.Files)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return fail("cannot use these policy files; `pci-segment validate` lists every problem")
	}

	v := policy.Evaluate(set, labels, pkt)
	res := checkResult{
		Verdict: verdictWord(v.Allowed),
		Reason:  v.Reason(),
		Packet: checkPacket{
			Direction: pkt.Direction.String(), Peer: pkt.Peer.String(),
			Protocol: protoName, Port: pkt.Port,
		},
		Text: v.String(),
	}
	if v.Reason() == policy.ReasonRuleMatches {
		res.Policy, res.Rule = v.Policy, v.Rule
		res.Source = &checkSource{File: v.Source.File, Document: v.Source.Doc, Line: v.Source.Line}
		res.Peer, res.Ports = v.PeerString(), v.PortString()
	}
	code := checkDeny
	if v.Allowed {
		code = checkAllow
	}

	if c.Live {
		k, err := c.askKernel(pkt, set)
		if err != nil {
			return fail("--live: %v", err)
		}
		k.Agrees = (k.Verdict == "allow") == v.Allowed
		res.Kernel = k
		if !k.Agrees {
			code = checkDisagree
		}
	}

	if c.Output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail("write output: %v", err)
		}
		return code
	}
	if res.Kernel == nil {
		fmt.Fprintln(stdout, res.Text)
		return code
	}
	fmt.Fprintf(stdout, "kernel: %s\nfiles:  %s\n", res.Kernel.Verdict, res.Text)
	for _, d := range res.Kernel.ProgramDiffers {
		fmt.Fprintf(stdout, "warning: %s: the kernel verdict above is this binary's program's, not the running one's\n", d)
	}
	if !res.Kernel.Agrees {
		fmt.Fprintf(stdout, "the kernel and the files disagree: %s\n", res.Kernel.explain())
	}
	return code
}

// explain says why the kernel may disagree, as far as the info map tells.
func (k *checkKernel) explain() string {
	switch {
	case k.SetHash == "":
		return "the policy in force could not be read; compare it with these files"
	case k.SetHash != k.FilesSetHash:
		return fmt.Sprintf("the policy in force (generation %d, set hash %.12s) "+
			"is not these files (set hash %.12s); check them against the files enforce was given",
			*k.Generation, k.SetHash, k.FilesSetHash)
	}
	return fmt.Sprintf("the policy in force (generation %d) is these files, "+
		"so the datapath or the labels differ: check that --labels are the ones enforce was given, "+
		"and report a datapath that still disagrees", *k.Generation)
}

// packet turns the flags into the packet description Evaluate reads, and
// names its protocol as printed.
func (c *checkCmd) packet() (policy.Packet, string, error) {
	var p policy.Packet
	switch c.Direction {
	case "ingress":
		p.Direction = policy.Ingress
	case "egress":
		p.Direction = policy.Egress
	default:
		return p, "", fmt.Errorf("--direction %q: use ingress or egress", c.Direction)
	}
	peer, err := netip.ParseAddr(c.Peer)
	if err != nil {
		return p, "", fmt.Errorf("--peer %q is not an IP address; give one IPv4 or IPv6 address", c.Peer)
	}
	p.Peer = peer.WithZone("")
	name := c.Protocol
	switch c.Protocol {
	case "TCP":
		p.Protocol = uint8(policy.TCP)
	case "UDP":
		p.Protocol = uint8(policy.UDP)
	case "SCTP":
		p.Protocol = uint8(policy.SCTP)
	case "ICMP":
		p.Protocol = 1
		if p.Peer.Is6() {
			p.Protocol, name = 58, "ICMPv6"
		}
	default:
		return p, "", fmt.Errorf("--protocol %q: use TCP, UDP, SCTP or ICMP", c.Protocol)
	}
	switch {
	case c.Protocol == "ICMP" && c.Port != 0:
		return p, "", errors.New("--port does not apply to ICMP, which has no ports; leave it out")
	case c.Protocol != "ICMP" && (c.Port < 1 || c.Port > 65535):
		if c.Port == 0 {
			return p, "", fmt.Errorf("--port is required for %s; give the destination port, 1-65535",
				c.Protocol)
		}
		return p, "", fmt.Errorf("--port %d is out of range; use 1-65535", c.Port)
	}
	p.Port = uint16(c.Port)
	return p, name, nil
}

// askKernel runs the packet through a twin of the datapath pinned under
// --pin-dir and reads which policy is in force there.
func (c *checkCmd) askKernel(p policy.Packet, set *policy.Set) (*checkKernel, error) {
	if euid := geteuid(); euid != 0 {
		return nil, fmt.Errorf("needs root (effective uid is %d): "+
			"it loads a BPF program and opens the pins under %s; "+
			"run it as root, or leave out --live for the verdict of the files alone", euid, c.PinDir)
	}
	twin, err := bpf.LoadTwinPinned(c.PinDir)
	if err != nil {
		return nil, err
	}
	defer twin.Close()

	host := liveHost4
	if !p.Peer.Is4() {
		host = liveHost6
	}
	w := bpf.Packet{Src: p.Peer, Dst: host, Proto: p.Protocol, Sport: liveSport, Dport: p.Port}
	if p.Direction == policy.Egress {
		w.Src, w.Dst = host, p.Peer
	}
	switch p.Protocol {
	case 1:
		w.ICMPType = 8 // echo request
	case 58:
		w.ICMPType = 128 // echo request
	}
	allow, err := twin.Verdict(p.Direction == policy.Egress, w)
	if err != nil {
		return nil, err
	}
	k := &checkKernel{Verdict: verdictWord(allow), PinDir: c.PinDir, FilesSetHash: set.HashHex()}
	if k.ProgramDiffers, err = twin.RunningDiffers(c.PinDir); err != nil {
		return nil, err
	}
	if info, err := pinnedInfo(c.PinDir); err == nil {
		k.Generation = &info.Generation
		k.SetHash = hex.EncodeToString(info.SetHash[:])
	}
	return k, nil
}

// pinnedInfo reads the generation and set hash of the policy in force.
func pinnedInfo(pinDir string) (bpf.DatapathInfoValue, error) {
	var info bpf.DatapathInfoValue
	m, err := ebpf.LoadPinnedMap(filepath.Join(pinDir, bpf.Layout, bpf.DatapathMapInfo),
		&ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return info, err
	}
	defer m.Close()
	err = m.Lookup(uint32(0), &info)
	return info, err
}
