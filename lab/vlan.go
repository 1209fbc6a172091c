package lab

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// VLAN is a VLAN sub-interface on each end of the lab's veth, with a subnet
// of its own. Traffic between its addresses crosses the veth tagged, so a
// program attached to the veth itself (Lab.HostIf) sees tagged traffic as
// the kernel delivers it to tc: the outer tag in the packet's metadata
// (skb->vlan_tci, as a VLAN device with tag offload leaves it and as the
// receive path moves it), any inner tag (QinQ) still in the frame.
//
// The kernel this lab was built on has no 802.1Q devices
// (CONFIG_VLAN_8021Q is off), so a sub-interface is emulated, the same on
// both ends: a veth pair <sub> and <sub>t in the namespace, the addresses
// on <sub>; a tcx program on <sub>t's ingress pushes the tags with
// bpf_skb_vlan_push and redirects the frame out of the lab's veth; a tcx
// program at the tail of the lab veth's ingress chain pops frames carrying
// exactly these tags and redirects them to <sub>t, whence <sub> receives
// them untagged. Programs at the head of the chain (pci-segment's) run
// before the pop, so they see the tags. ARP and neighbour discovery of the
// subnet are tagged like everything else.
type VLAN struct {
	// IDs are the VLAN ids, outermost first; Protos their tag protocols
	// (0x8100 802.1Q, 0x88a8 802.1ad).
	IDs    []int
	Protos []uint16
	// HostIf and PeerIf are the sub-interfaces carrying the addresses, in
	// the host and peer namespaces.
	HostIf, PeerIf string
	Host4, Peer4   netip.Addr
	Host6, Peer6   netip.Addr
	Net4, Net6     netip.Prefix
}

// Tag protocols.
const (
	TagQ  = 0x8100 // 802.1Q, a customer tag
	TagAD = 0x88a8 // 802.1ad, a service tag (QinQ outer)
)

// AddVLAN adds an 802.1Q sub-interface with VLAN id (1 to 155) on both
// ends of the veth, addressed in 10.77.<100+id>.0/24 and
// fd00:77:<100+id>::/64: the host .1 and ::1, the peer .2 and ::2. It fails
// t on any error; the lab's removal removes it.
func (l *Lab) AddVLAN(t testing.TB, id int) *VLAN {
	t.Helper()
	if id < 1 || id > 155 {
		t.Fatalf("lab: VLAN id %d: want 1 to 155 (the subnet is 10.77.<100+id>.0/24)", id)
	}
	n := 100 + id
	v := newVLAN([]int{id}, []uint16{TagQ}, "."+strconv.Itoa(id),
		fmt.Sprintf("10.77.%d.0/24", n), fmt.Sprintf("fd00:77:%d::/64", n))
	l.addVLAN(t, v)
	return v
}

// AddQinQ adds a sub-interface on both ends of the veth whose frames carry
// an 802.1ad tag with id outer (1 to 4094) around an 802.1Q tag with id
// inner (1 to 255), addressed in 10.78.<inner>.0/24 and
// fd00:78:<inner>::/64: the host .1 and ::1, the peer .2 and ::2.
func (l *Lab) AddQinQ(t testing.TB, outer, inner int) *VLAN {
	t.Helper()
	if outer < 1 || outer > 4094 || inner < 1 || inner > 255 {
		t.Fatalf("lab: QinQ %d/%d: want an outer id 1 to 4094 and an inner id 1 to 255", outer, inner)
	}
	v := newVLAN([]int{outer, inner}, []uint16{TagAD, TagQ}, "q"+strconv.Itoa(inner),
		fmt.Sprintf("10.78.%d.0/24", inner), fmt.Sprintf("fd00:78:%d::/64", inner))
	l.addVLAN(t, v)
	return v
}

func newVLAN(ids []int, protos []uint16, suffix, net4, net6 string) *VLAN {
	v := &VLAN{IDs: ids, Protos: protos, Net4: netip.MustParsePrefix(net4), Net6: netip.MustParsePrefix(net6)}
	v.HostIf, v.PeerIf = suffix, suffix // completed by addVLAN
	v.Host4 = v.Net4.Addr().Next()
	v.Peer4 = v.Host4.Next()
	v.Host6 = v.Net6.Addr().Next()
	v.Peer6 = v.Host6.Next()
	return v
}

func (l *Lab) addVLAN(t testing.TB, v *VLAN) {
	t.Helper()
	suffix := v.HostIf
	v.HostIf, v.PeerIf = l.HostIf+suffix, l.PeerIf+suffix
	for _, end := range []struct {
		ns, parent, sub string
		a4, a6          netip.Addr
	}{
		{l.HostNS, l.HostIf, v.HostIf, v.Host4, v.Host6},
		{l.PeerNS, l.PeerIf, v.PeerIf, v.Peer4, v.Peer6},
	} {
		tagger := end.sub + "t"
		steps := [][]string{
			{"-n", end.ns, "link", "add", end.sub, "type", "veth", "peer", "name", tagger},
			// The tagger end only carries frames: no addresses of its own.
			{"-n", end.ns, "link", "set", tagger, "addrgenmode", "none"},
			{"-n", end.ns, "link", "set", tagger, "up"},
			{"-n", end.ns, "addr", "add", prefixOf(end.a4, v.Net4), "dev", end.sub},
			{"-n", end.ns, "addr", "add", prefixOf(end.a6, v.Net6), "dev", end.sub, "nodad"},
			{"-n", end.ns, "link", "set", end.sub, "up"},
		}
		for _, args := range steps {
			if out, err := run("ip", args...); err != nil {
				t.Fatalf("lab: %v", describe("ip", args, out, err))
			}
		}
		err := l.Do(end.ns, func() error { return l.attachTaggers(v, end.parent, tagger) })
		if err != nil {
			t.Fatalf("lab: VLAN %v on %s in %s: %v", v.IDs, end.parent, end.ns, err)
		}
		l.waitReady(t, end.ns, end.sub, end.a6)
	}
}

// attachTaggers loads and attaches the two programs of one end; it runs
// inside the end's namespace.
func (l *Lab) attachTaggers(v *VLAN, parent, tagger string) error {
	pif, err := net.InterfaceByName(parent)
	if err != nil {
		return err
	}
	tif, err := net.InterfaceByName(tagger)
	if err != nil {
		return err
	}
	push, err := loadTagProgram(pushProgram(v, pif.Index))
	if err != nil {
		return fmt.Errorf("load tag push program: %w", err)
	}
	defer push.Close()
	pop, err := loadTagProgram(popProgram(v, tif.Index))
	if err != nil {
		return fmt.Errorf("load tag pop program: %w", err)
	}
	defer pop.Close()
	lp, err := link.AttachTCX(link.TCXOptions{Interface: tif.Index, Program: push, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attach tag push program to %s: %w", tagger, err)
	}
	l.track(lp)
	lq, err := link.AttachTCX(link.TCXOptions{Interface: pif.Index, Program: pop, Attach: ebpf.AttachTCXIngress, Anchor: link.Tail()})
	if err != nil {
		return fmt.Errorf("attach tag pop program to %s: %w", parent, err)
	}
	l.track(lq)
	return nil
}

func loadTagProgram(insns asm.Instructions) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		AttachType:   ebpf.AttachTCXIngress,
		Instructions: insns,
		License:      "Dual BSD/GPL",
	})
}

// Offsets in struct __sk_buff, and tcx verdicts.
const (
	skbVLANPresent = 20
	skbVLANTCI     = 24
	skbVLANProto   = 28
	tcxNext        = -1
	tcxDrop        = 2
)

// htons16 is v in network byte order, as the kernel keeps a tag protocol
// and as bpf_skb_vlan_push wants it.
func htons16(v uint16) int64 { return int64(v>>8 | v<<8&0xff00) }

// pushProgram tags a frame with v's tags (innermost first, so the outer tag
// ends in the metadata and the inner one in the frame) and sends it out of
// ifindex.
func pushProgram(v *VLAN, ifindex int) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	for i := len(v.IDs) - 1; i >= 0; i-- {
		insns = append(insns,
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.Mov.Imm(asm.R2, int32(htons16(v.Protos[i]))),
			asm.Mov.Imm(asm.R3, int32(v.IDs[i])),
			asm.FnSkbVlanPush.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
	)
}

// popProgram takes a frame carrying exactly v's tags off the wire: it pops
// them, outermost first (each pop moves the next tag from the frame into
// the metadata), and sends the frame to ifindex's egress. Any other frame
// goes on down the chain untouched.
func popProgram(v *VLAN, ifindex int) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	for i := range v.IDs {
		miss := "next"
		if i > 0 {
			miss = "drop" // half popped: not ours after all
		}
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R6, skbVLANPresent, asm.Word),
			asm.JEq.Imm(asm.R2, 0, miss),
			asm.LoadMem(asm.R2, asm.R6, skbVLANTCI, asm.Word),
			asm.And.Imm(asm.R2, 0x0fff),
			asm.JNE.Imm(asm.R2, int32(v.IDs[i]), miss),
			asm.LoadMem(asm.R2, asm.R6, skbVLANProto, asm.Word),
			asm.JNE.Imm(asm.R2, int32(htons16(v.Protos[i])), miss),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.FnSkbVlanPop.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("next"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
	)
}
