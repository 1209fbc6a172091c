package bpf

import (
	"encoding/binary"
	"net/netip"
)

// Fragment says which part of a fragmented datagram a Packet is.
type Fragment uint8

const (
	Whole     Fragment = iota // not fragmented
	FirstFrag                 // offset 0, more fragments follow
	LaterFrag                 // offset > 0
)

// Packet describes a crafted frame for BPF_PROG_TEST_RUN: `check --live`
// and the tests use it to ask the datapath for a verdict. Src and Dst are
// as on the wire: for ingress the peer is Src, for egress Dst.
type Packet struct {
	Src, Dst     netip.Addr
	Proto        uint8 // 6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6, ...
	Sport, Dport uint16
	// ICMPType is the ICMP or ICMPv6 type when Proto is 1 or 58, and
	// EchoID the identifier of an echo request or reply.
	ICMPType uint8
	EchoID   uint16
	// Quote is the packet an ICMP error carries (its first bytes).
	Quote *Packet
	// VLANs are 802.1Q tags to put in the frame, outermost first.
	VLANs []uint16
	// Frag and FragID describe fragmentation (IPv4 flags and
	// identification, or an IPv6 fragment header).
	Frag   Fragment
	FragID uint32
	// L4Bytes, when non-zero, cuts the transport header to this many bytes
	// (a truncated first fragment).
	L4Bytes int
	// IPv6Ext lists extension header types to insert before the upper
	// layer (0 hop-by-hop, 43 routing, 60 destination options, or any
	// other number for an unknown header); each is 8 bytes long.
	IPv6Ext []uint8
}

// Frame builds the Ethernet frame. Checksums are left zero: the datapath
// does not read them.
func (p Packet) Frame() []byte {
	b := make([]byte, 12, 128)
	for _, id := range p.VLANs {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, id&0x0fff)
	}
	if p.Src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
	}
	return append(b, p.ip()...)
}

// ip builds the IP datagram: header(s) and transport header.
func (p Packet) ip() []byte {
	l4 := p.transport()
	if p.Src.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(h[4:], uint16(p.FragID))
		switch p.Frag {
		case FirstFrag:
			binary.BigEndian.PutUint16(h[6:], 0x2000) // more fragments
		case LaterFrag:
			binary.BigEndian.PutUint16(h[6:], 185) // offset 1480 bytes
		}
		h[8] = 64
		h[9] = p.Proto
		s, d := p.Src.As4(), p.Dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		return append(h, l4...)
	}

	// IPv6: fixed header, extension headers, fragment header, upper layer.
	var ext []byte
	next := p.Proto
	if p.Frag != Whole {
		f := make([]byte, 8)
		f[0] = next
		switch p.Frag {
		case FirstFrag:
			f[3] = 1 // M flag, offset 0
		case LaterFrag:
			binary.BigEndian.PutUint16(f[2:], 1480) // offset 185*8, no M
		}
		binary.BigEndian.PutUint32(f[4:], p.FragID)
		ext = f
		next = 44
	}
	for i := len(p.IPv6Ext) - 1; i >= 0; i-- {
		e := make([]byte, 8)
		e[0] = next
		ext = append(e, ext...)
		next = p.IPv6Ext[i]
	}
	h := make([]byte, 40)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(ext)+len(l4)))
	h[6] = next
	h[7] = 64
	s, d := p.Src.As16(), p.Dst.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	return append(append(h, ext...), l4...)
}

// transport builds the transport header, or nothing for a later fragment.
func (p Packet) transport() []byte {
	if p.Frag == LaterFrag {
		// Bytes that would read as ports 40000 -> 443 if taken for a
		// header: a later fragment must never be judged by them.
		return []byte{0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 0}
	}
	var l4 []byte
	switch p.Proto {
	case 6: // TCP: ports, seq, ack, offset, flags=SYN
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		l4[13] = 0x02
	case 17, 132: // UDP; SCTP common header is 12 bytes, ports first too
		l4 = make([]byte, 12)
	case 1, 58:
		l4 = make([]byte, 8)
		l4[0] = p.ICMPType
		binary.BigEndian.PutUint16(l4[4:], p.EchoID)
		if p.Quote != nil {
			q := p.Quote.ip()
			// An error quotes the IP header and 8 bytes beyond it.
			if n := ipHeaderLen(q) + 8; n < len(q) {
				q = q[:n]
			}
			l4 = append(l4, q...)
		}
		return l4
	default:
		l4 = make([]byte, 8)
	}
	binary.BigEndian.PutUint16(l4[0:], p.Sport)
	binary.BigEndian.PutUint16(l4[2:], p.Dport)
	if p.L4Bytes > 0 && p.L4Bytes < len(l4) {
		l4 = l4[:p.L4Bytes]
	}
	return l4
}

func ipHeaderLen(ip []byte) int {
	if ip[0]>>4 == 4 {
		return int(ip[0]&0x0f) * 4
	}
	return 40
}
