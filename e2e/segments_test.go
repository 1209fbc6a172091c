package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/pci-segment/pci-segment/bpf"
	"github.com/pci-segment/pci-segment/lab"
)

// vlanPolicy allows TCP 443 from and to the subnets of vs, nothing else.
func vlanPolicy(vs ...*lab.VLAN) string {
	var peers strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&peers, "        - ipBlock: {cidr: %q}\n        - ipBlock: {cidr: %q}\n", v.Net4, v.Net6)
	}
	return `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: vlan-web
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
    - ports: [{protocol: TCP, port: 443}]
      from:
` + peers.String() + `  egress:
    - ports: [{protocol: TCP, port: 443}]
      to:
` + peers.String()
}

// TestVLANTrafficIsEnforcedOnTheParent attaches to the lab's veth and sends
// traffic over VLAN sub-interfaces on top of it: the tags arrive as the
// kernel hands them to tc (the outer one in metadata, an inner one in the
// frame), and the verdict is the one for the IP packet inside.
func TestVLANTrafficIsEnforcedOnTheParent(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	vlans := []struct {
		name string
		v    *lab.VLAN
	}{
		{"802.1Q", l.AddVLAN(t, 10)},
		{"QinQ 802.1ad+802.1Q", l.AddQinQ(t, 20, 30)},
	}
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	listen(t, l, l.PeerNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	e := startEnforcing(t, l, policyDir(t, map[string]string{"vlan.yaml": vlanPolicy(vlans[0].v, vlans[1].v)}), enforceOpts{})

	for _, vl := range vlans {
		v := vl.v
		for _, fam := range []struct {
			name       string
			host, peer netip.Addr
		}{{"IPv4", v.Host4, v.Peer4}, {"IPv6", v.Host6, v.Peer6}} {
			t.Run(vl.name+"/"+fam.name, func(t *testing.T) {
				t.Run("TCP 443 in over the VLAN connects", func(t *testing.T) {
					mustConnect(t, l, l.PeerNS, fam.peer, ap(fam.host, 443))
				})
				t.Run("TCP 22 in over the VLAN is dropped", func(t *testing.T) {
					mustDrop(t, l, l.PeerNS, fam.peer, ap(fam.host, 22))
				})
				t.Run("TCP 443 out over the VLAN connects", func(t *testing.T) {
					mustConnect(t, l, l.HostNS, fam.host, ap(fam.peer, 443))
				})
				t.Run("TCP 22 out over the VLAN is dropped", func(t *testing.T) {
					mustDrop(t, l, l.HostNS, fam.host, ap(fam.peer, 22))
				})
			})
		}
	}
	t.Run("untagged traffic of the same hosts is judged on its own addresses", func(t *testing.T) {
		mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	})

	// Drops were of the IP packets inside the tags, not of unknown
	// ethertypes: the audit log names their addresses and ports.
	t.Run("the audit log names the packets inside the tags", func(t *testing.T) {
		// A record for the peer's port 22 comes only from the egress
		// program dropping the SYN: had it let it pass, the reply
		// would have been dropped on ingress instead, under the
		// host's ephemeral port.
		var want []string
		for _, vl := range vlans {
			for _, a := range []netip.Addr{vl.v.Host4, vl.v.Host6, vl.v.Peer4, vl.v.Peer6} {
				want = append(want, fmt.Sprintf(`"resource":"%s"`, ap(a, 22)))
			}
		}
		var log string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if log = e.auditLog(t); containsAll(log, want) {
				break
			}
		}
		for _, w := range append(want, `"reason":"no_rule"`) {
			if !strings.Contains(log, w) {
				t.Errorf("audit log lacks %s:\n%s", w, log)
			}
		}
		if strings.Contains(log, `"reason":"ethertype"`) {
			t.Errorf("tagged frames dropped as unknown ethertypes:\n%s", log)
		}
	})
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// TestPolicyOverCapacityAttachesNothing: with room for fewer prefixes than
// the policy needs, enforce fails before attaching, saying what the set
// needs, what the maps hold and which flag to raise.
func TestPolicyOverCapacityAttachesNothing(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	// labPolicy compiles to four prefixes: an IPv4 and an IPv6 one in
	// each direction.
	e := newEnforcer(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}),
		enforceOpts{args: []string{"--max-prefixes", "3"}})
	failsToStart(t, l, e, "needs 4 address prefix entries (2 IPv4, 2 IPv6), the datapath holds 3",
		"raise --max-prefixes to at least 4", "nothing was attached")
}

// TestEnforceSizesTheMapsFromItsFlags: the loader creates the maps with the
// capacities given, and the worker, which checks every map fd it receives
// against exactly those, accepts them and enforces.
func TestEnforceSizesTheMapsFromItsFlags(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	l := lab.New(t)
	listen(t, l, l.HostNS, ap(netip.IPv6Unspecified(), 443), ap(netip.IPv6Unspecified(), 22))
	e := startEnforcing(t, l, policyDir(t, map[string]string{"cde.yaml": labPolicy}),
		enforceOpts{args: []string{"--max-prefixes", "4", "--max-port-entries", "16", "--max-flows", "1000"}})
	mustConnect(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 443))
	mustDrop(t, l, l.PeerNS, l.Peer4, ap(l.Host4, 22))
	for name, want := range map[string]uint32{"addr4": 8, "addr6": 8, "ports": 32, "conntrack": 2000} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(e.pinDir, bpf.Layout, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("open pinned %s: %v", name, err)
		}
		if got := m.MaxEntries(); got != want {
			t.Errorf("%s holds %d entries, want %d", name, got, want)
		}
		m.Close()
	}
}
