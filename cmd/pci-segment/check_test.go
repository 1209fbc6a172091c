package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/datapath"
	"github.com/pci-segment/pci-segment/pins"
	"github.com/pci-segment/pci-segment/policy"
	"github.com/pci-segment/pci-segment/testenv"
)

const checkPolicies = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata: {name: web, namespace: cde}
spec:
  podSelector: {matchLabels: {tier: web}}
  policyTypes: [Ingress]
  ingress:
    - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]
      ports: [{protocol: TCP, port: 443}, {protocol: UDP, port: 5000, endPort: 5010}]
    - from: [{ipBlock: {cidr: "2001:db8:7::/48"}}]
`

func writePolicies(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runCheck(t *testing.T, c checkCmd) (code int, stdout, stderr string) {
	t.Helper()
	if c.Output == "" {
		c.Output = "text"
	}
	if c.PinDir == "" {
		c.PinDir = pins.DefaultDir
	}
	var out, errb bytes.Buffer
	code = c.run(&out, &errb)
	return code, out.String(), errb.String()
}

func TestCheckExplainsTheVerdict(t *testing.T) {
	dir := writePolicies(t, checkPolicies)
	file := filepath.Join(dir, "web.yaml")
	tests := []struct {
		name string
		c    checkCmd
		code int
		text string
		json checkResult
	}{
		{
			name: "allowed by a rule",
			c:    checkCmd{Labels: "tier=web", Direction: "ingress", Peer: "10.2.3.4", Protocol: "TCP", Port: 443},
			code: checkAllow,
			text: "allow: policy cde/web spec.ingress[0] (peer 10.0.0.0/8, port TCP 443; " + file + ":8)\n",
			json: checkResult{Verdict: "allow", Reason: "rule matches", Policy: "cde/web", Rule: "spec.ingress[0]",
				Peer: "10.0.0.0/8", Ports: "TCP 443", Source: &checkSource{File: file, Document: 1, Line: 8},
				Packet: checkPacket{Direction: "ingress", Peer: "10.2.3.4", Protocol: "TCP", Port: 443}},
		},
		{
			name: "a port range",
			c:    checkCmd{Labels: "tier=web", Direction: "ingress", Peer: "10.2.3.4", Protocol: "UDP", Port: 5010},
			code: checkAllow,
			text: "allow: policy cde/web spec.ingress[0] (peer 10.0.0.0/8, port UDP 5000-5010; " + file + ":8)\n",
			json: checkResult{Verdict: "allow", Reason: "rule matches", Policy: "cde/web", Rule: "spec.ingress[0]",
				Peer: "10.0.0.0/8", Ports: "UDP 5000-5010", Source: &checkSource{File: file, Document: 1, Line: 8},
				Packet: checkPacket{Direction: "ingress", Peer: "10.2.3.4", Protocol: "UDP", Port: 5010}},
		},
		{
			name: "ICMPv6 by a rule without ports",
			c:    checkCmd{Labels: "tier=web", Direction: "ingress", Peer: "2001:db8:7::9", Protocol: "ICMP"},
			code: checkAllow,
			text: "allow: policy cde/web spec.ingress[1] (peer 2001:db8:7::/48, port any; " + file + ":10)\n",
			json: checkResult{Verdict: "allow", Reason: "rule matches", Policy: "cde/web", Rule: "spec.ingress[1]",
				Peer: "2001:db8:7::/48", Ports: "any", Source: &checkSource{File: file, Document: 1, Line: 10},
				Packet: checkPacket{Direction: "ingress", Peer: "2001:db8:7::9", Protocol: "ICMPv6"}},
		},
		{
			name: "excepted address",
			c:    checkCmd{Labels: "tier=web", Direction: "ingress", Peer: "10.0.1.7", Protocol: "TCP", Port: 443},
			code: checkDeny,
			text: "deny: no rule matches (ingress is governed: default deny)\n",
			json: checkResult{Verdict: "deny", Reason: "no rule matches",
				Packet: checkPacket{Direction: "ingress", Peer: "10.0.1.7", Protocol: "TCP", Port: 443}},
		},
		{
			name: "ICMP needs a rule without ports",
			c:    checkCmd{Labels: "tier=web", Direction: "ingress", Peer: "10.2.3.4", Protocol: "ICMP"},
			code: checkDeny,
			text: "deny: no rule matches (ingress is governed: default deny)\n",
			json: checkResult{Verdict: "deny", Reason: "no rule matches",
				Packet: checkPacket{Direction: "ingress", Peer: "10.2.3.4", Protocol: "ICMP"}},
		},
		{
			name: "egress is not governed",
			c:    checkCmd{Labels: "tier=web", Direction: "egress", Peer: "198.51.100.1", Protocol: "SCTP", Port: 1},
			code: checkAllow,
			text: "allow: direction not governed (egress is governed by no applying policy)\n",
			json: checkResult{Verdict: "allow", Reason: "direction not governed",
				Packet: checkPacket{Direction: "egress", Peer: "198.51.100.1", Protocol: "SCTP", Port: 1}},
		},
		{
			name: "the policy does not apply to other hosts",
			c:    checkCmd{Labels: "tier=db", Direction: "ingress", Peer: "10.0.1.7", Protocol: "TCP", Port: 22},
			code: checkAllow,
			text: "allow: direction not governed (ingress is governed by no applying policy)\n",
			json: checkResult{Verdict: "allow", Reason: "direction not governed",
				Packet: checkPacket{Direction: "ingress", Peer: "10.0.1.7", Protocol: "TCP", Port: 22}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Files = []string{dir}
			code, out, errs := runCheck(t, tc.c)
			if code != tc.code || out != tc.text || errs != "" {
				t.Errorf("text: exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q", code, out, errs, tc.code, tc.text)
			}
			tc.c.Output = "json"
			code, out, errs = runCheck(t, tc.c)
			var got checkResult
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("json output %q: %v", out, err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(tc.json)
			if code != tc.code || string(gj) != string(wj) || errs != "" {
				t.Errorf("json: exit %d, stderr %q\ngot  %s\nwant %s", code, errs, gj, wj)
			}
		})
	}
}

func TestCheckRefusesBadInput(t *testing.T) {
	dir := writePolicies(t, checkPolicies)
	bad := writePolicies(t, strings.Replace(checkPolicies, "10.0.0.0/8", "10.0.0.1/8", 1))
	tests := []struct {
		name string
		c    checkCmd
		want string
	}{
		{"peer not an address", checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.0/8", Protocol: "TCP", Port: 1}, "--peer \"10.0.0.0/8\" is not an IP address"},
		{"TCP without port", checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.1", Protocol: "TCP"}, "--port is required for TCP"},
		{"port out of range", checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.1", Protocol: "UDP", Port: 65536}, "--port 65536 is out of range"},
		{"ICMP with a port", checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.1", Protocol: "ICMP", Port: 8}, "--port does not apply to ICMP"},
		{"bad labels", checkCmd{Files: []string{dir}, Labels: "tier", Direction: "ingress", Peer: "10.0.0.1", Protocol: "TCP", Port: 1}, "--labels"},
		{"invalid policy", checkCmd{Files: []string{bad}, Direction: "ingress", Peer: "10.0.0.1", Protocol: "TCP", Port: 1}, "host bits set"},
		{"no such file", checkCmd{Files: []string{filepath.Join(dir, "nope.yaml")}, Direction: "ingress", Peer: "10.0.0.1", Protocol: "TCP", Port: 1}, "nope.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCheck(t, tc.c)
			if code != checkError || out != "" || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out, errs, tc.want)
			}
		})
	}
}

func TestCheckLiveNeedsRoot(t *testing.T) {
	dir := writePolicies(t, checkPolicies)
	defer func(f func() int) { geteuid = f }(geteuid)
	geteuid = func() int { return 1000 }
	code, out, errs := runCheck(t, checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.1",
		Protocol: "TCP", Port: 443, Live: true})
	if code != checkError || out != "" || !strings.Contains(errs, "--live: needs root (effective uid is 1000)") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestCheckLiveWithoutPins(t *testing.T) {
	testenv.RequireRoot(t)
	dir := writePolicies(t, checkPolicies)
	pins := t.TempDir()
	code, out, errs := runCheck(t, checkCmd{Files: []string{dir}, Direction: "ingress", Peer: "10.0.0.1",
		Protocol: "TCP", Port: 443, Live: true, PinDir: pins})
	want := "--live: no pinned datapath in " + filepath.Join(pins, bpf.Layout) + ": is `pci-segment enforce` running"
	if code != checkError || out != "" || !strings.Contains(errs, want) {
		t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
}

// pinDatapath loads the datapath with the policies of dir (for labels)
// applied and pins its maps as the loader does, in a directory of its own
// under /sys/fs/bpf. It returns the pin directory and a function that
// applies another policy set.
func pinDatapath(t *testing.T, dir, labels string) (string, func(dir string)) {
	t.Helper()
	testenv.RequireRoot(t)
	objs, err := bpf.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	gen := uint64(0)
	apply := func(dir string) {
		set, err := policy.Load([]string{dir})
		if err != nil {
			t.Fatal(err)
		}
		lbl, err := policy.ParseLabels(labels)
		if err != nil {
			t.Fatal(err)
		}
		c, err := policy.Compile(set, lbl)
		if err != nil {
			t.Fatal(err)
		}
		gen++
		pm := datapath.Writer(objs.All())
		if err := pm.Apply(c, gen, set.Hash); err != nil {
			t.Fatal(err)
		}
	}
	apply(dir)

	pins, err := os.MkdirTemp("/sys/fs/bpf", "pci-segment-check-test-")
	if err != nil {
		testenv.Unavailable(t, "no bpffs at /sys/fs/bpf: "+err.Error())
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(pins); err != nil {
			t.Error(err)
		}
	})
	if err := os.Mkdir(filepath.Join(pins, bpf.Layout), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range bpf.WorkerMaps {
		m, err := objs.ByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Pin(filepath.Join(pins, bpf.Layout, name)); err != nil {
			t.Fatal(err)
		}
	}
	return pins, apply
}

func TestCheckLive(t *testing.T) {
	dir := writePolicies(t, checkPolicies)
	pins, apply := pinDatapath(t, dir, "tier=web")
	live := func(peer, proto string, port int, output string) checkCmd {
		return checkCmd{Files: []string{dir}, Labels: "tier=web", Direction: "ingress", Peer: peer,
			Protocol: proto, Port: port, Output: output, Live: true, PinDir: pins}
	}

	for _, tc := range []struct {
		c    checkCmd
		code int
		want string
	}{
		{live("10.2.3.4", "TCP", 443, "text"), checkAllow, "kernel: allow\nfiles:  allow: policy cde/web spec.ingress[0]"},
		{live("10.0.1.7", "TCP", 443, "text"), checkDeny, "kernel: deny\nfiles:  deny: no rule matches"},
		{live("::ffff:10.2.3.4", "TCP", 443, "text"), checkDeny, "kernel: deny\nfiles:  deny: no rule matches"},
		{live("2001:db8:7::1", "ICMP", 0, "text"), checkAllow, "kernel: allow\nfiles:  allow: policy cde/web spec.ingress[1]"},
	} {
		code, out, errs := runCheck(t, tc.c)
		if code != tc.code || !strings.HasPrefix(out, tc.want) || errs != "" {
			t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want exit %d and %q", tc.c.Peer, tc.c.Protocol, code, out, errs, tc.code, tc.want)
		}
	}

	code, out, _ := runCheck(t, live("10.2.3.4", "UDP", 5001, "json"))
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	k := res.Kernel
	if code != checkAllow || k == nil || k.Verdict != "allow" || !k.Agrees || k.PinDir != pins ||
		k.Generation == nil || *k.Generation != 1 || k.SetHash == "" || k.SetHash != k.FilesSetHash {
		t.Errorf("exit %d, json %s", code, out)
	}

	// Enforce other policies than the files: the kernel disagrees, says
	// so, and exits 3.
	other := writePolicies(t, strings.Replace(checkPolicies, "port: 443", "port: 8443", 1))
	apply(other)
	code, out, _ = runCheck(t, live("10.2.3.4", "TCP", 443, "text"))
	if code != checkDisagree || !strings.HasPrefix(out, "kernel: deny\nfiles:  allow:") ||
		!strings.Contains(out, "the kernel and the files disagree: the policy in force (generation 2") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
	code, out, _ = runCheck(t, live("10.2.3.4", "TCP", 443, "json"))
	res = checkResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if k := res.Kernel; code != checkDisagree || k == nil || k.Agrees || k.Verdict != "deny" || res.Verdict != "allow" || k.SetHash == k.FilesSetHash {
		t.Errorf("exit %d, json %s", code, out)
	}
}

// TestCheckCommandLine runs the binary's main (this test binary, re-run
// as a helper) to check the flags and exit codes as a user sees them.
func TestCheckCommandLine(t *testing.T) {
	if args := os.Getenv("PCI_SEGMENT_TEST_MAIN"); args != "" {
		os.Args = append([]string{"pci-segment"}, strings.Split(args, "\x1f")...)
		main()
		return
	}
	dir := writePolicies(t, checkPolicies)
	base := []string{"check", "-f", dir, "--labels", "tier=web"}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--direction", "ingress", "--peer", "10.2.3.4", "--protocol", "TCP", "--port", "443"}, 0, "allow: policy cde/web"},
		{[]string{"--direction", "ingress", "--peer", "10.2.3.4", "--protocol", "TCP", "--port", "22"}, 1, "deny: no rule matches"},
		{[]string{"--direction", "egress", "--peer", "10.2.3.4", "--protocol", "ICMP", "-o", "json"}, 0, `"reason": "direction not governed"`},
		{[]string{"--direction", "ingress", "--peer", "10.2.3.4", "--protocol", "tcp", "--port", "443"}, 2, ""},
		{[]string{"--direction", "inbound", "--peer", "10.2.3.4", "--protocol", "TCP", "--port", "443"}, 2, ""},
		{[]string{"--direction", "ingress", "--protocol", "TCP", "--port", "443"}, 2, ""},
		{[]string{"--direction", "ingress", "--peer", "10.2.3.4", "--protocol", "TCP", "--port", "x"}, 2, ""},
	} {
		args := append(append([]string{}, base...), tc.args...)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCheckCommandLine$")
		cmd.Env = append(os.Environ(), "PCI_SEGMENT_TEST_MAIN="+strings.Join(args, "\x1f"))
		out, err := cmd.Output()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.out) {
			t.Errorf("%v: exit %d, stdout %q; want exit %d and %q", tc.args, code, out, tc.code, tc.out)
		}
	}
}

func TestCheckPinDirDefaultIsTheLoaders(t *testing.T) {
	f, _ := reflect.TypeFor[checkCmd]().FieldByName("PinDir")
	if got := f.Tag.Get("default"); got != pins.DefaultDir {
		t.Errorf("check --pin-dir defaults to %q, enforce pins to %q", got, pins.DefaultDir)
	}
}
