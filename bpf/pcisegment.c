//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// pci-segment datapath: one tcx program per direction, attached at the head
// of every enforced interface. A packet in a direction that some applying
// policy governs is dropped unless a rule allows it or it belongs to a flow
// that was allowed before. Allowed packets return TCX_NEXT, so programs
// attached after ours still run.
//
// Lookups never scan rules: the peer address selects a class (the set of
// rules whose peers cover it) in an LPM trie, and a second LPM trie keyed by
// (class, protocol, port) holds the allowances. A connection-tracking hit
// skips both.
//
// The policy maps hold two halves; the selector names the live one. Userspace
// writes the inactive half and then flips the selector, so a packet sees
// either the old policy or the new one, never a mix.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// tcx verdicts; Debian 12's UAPI headers predate them.
#define TCX_NEXT -1
#define TCX_DROP 2

#define DIR_INGRESS 0
#define DIR_EGRESS 1

#define FAMILY_IPV4 4
#define FAMILY_IPV6 6

#define IPPROTO_ICMPV6_ 58
#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

// Why a packet was dropped; mirrored in bpf/datapath.go.
enum reason {
	REASON_NO_RULE = 1,     // governed direction, no rule allows it
	REASON_ETHERTYPE = 2,   // not ARP, IPv4 or IPv6
	REASON_MALFORMED = 3,   // headers shorter than they claim
	REASON_UNSUPPORTED = 4, // unknown or too many IPv6 extension headers
	REASON_REVOKED = 5,     // tracked flow no longer allowed by the policy
	REASON_FRAGMENT = 6,    // later fragment whose first fragment did not pass
};

// Counter slots; mirrored in bpf/datapath.go.
#define CNT_VERDICT(dir, deny) ((dir) * 2 + (deny))
#define CNT_EVENTS_LOST 4
#define CNT_MONITOR(dir) (5 + (dir)) // would have been denied: monitor mode
#define CNT_REASON(r) (8 + (r))
#define CNT_SLOTS 16

// Idle timeouts of connection-tracking entries, per protocol. Load-time
// constants so that tests can shorten them.
volatile const __u64 ct_timeout_tcp_ns = 3600ULL * 1000000000ULL;
volatile const __u64 ct_timeout_udp_ns = 120ULL * 1000000000ULL;
volatile const __u64 ct_timeout_other_ns = 30ULL * 1000000000ULL;
// How long the first fragment of a datagram vouches for the rest (the
// kernel's own reassembly timeout is 30 s).
volatile const __u64 frag_timeout_ns = 30ULL * 1000000000ULL;

// check_mode makes the twin that `pci-segment check --live` and the tests
// run with BPF_PROG_TEST_RUN: it reads the policy maps of the loaded
// program but keeps no state, counts nothing and reports no events, so a
// crafted packet judged by it leaves the live datapath untouched.
volatile const __u8 check_mode = 0;

// An LPM key covers half, dir and pad (32 bits) before the address, so one
// trie holds both halves and both directions: prefixlen = 32 + address bits.
struct addr4_key {
	__u32 prefixlen;
	__u8 half;
	__u8 dir;
	__u8 pad[2];
	__u8 addr[4];
};

struct addr6_key {
	__u32 prefixlen;
	__u8 half;
	__u8 dir;
	__u8 pad[2];
	__u8 addr[16];
};

struct addr_value {
	__u32 class;
};

// prefixlen: 64 (half, dir, pad, class) for every protocol, +16 (proto, pad)
// for every port of one protocol, +1..16 more for a block of ports.
struct port_key {
	__u32 prefixlen;
	__u8 half;
	__u8 dir;
	__u8 pad[2];
	__u32 class;
	__u8 proto;
	__u8 pad2;
	__be16 port;
};

struct port_value {
	__u32 policy;
};

// The policies one set may hold: the per-policy match counters have this
// many slots per half.
#define MAX_POLICIES 4096

struct policy_hit {
	__u64 packets; // of the flows its rules let in, both ways
	__u64 last_ns; // of the last one, CLOCK_MONOTONIC_COARSE ns
};

struct selector_value {
	__u32 active;
	__u32 pad;
};

// Per-half settings: the generation of the policy written there, which
// directions it governs, and whether it only monitors: a packet it denies
// is counted and reported as a would-be denial, and passes.
struct half_config {
	__u64 generation;
	__u8 governed[2];
	__u8 monitor;
	__u8 pad[5];
};

// IPv4 addresses use the first 4 bytes; the rest stays zero.
struct ct_key {
	__u8 family;
	__u8 proto;
	__u8 echo; // ICMP echo: 1 request, 2 reply; 0 otherwise
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
};

// Each allowed flow has two entries: its own tuple and the reversed one
// (reply = 1). dir is the direction in which packets with this key travel.
struct ct_value {
	__u64 last_seen_ns;
	__u64 generation;
	__u8 dir;
	__u8 reply;
	__u16 pad;
	__u32 policy; // 1 + the index, under generation, of the policy that let it in; 0 none
};

// The first fragment of a datagram that was allowed, so that its later
// fragments (which carry no ports) may follow. Value: when it passed.
struct frag_key {
	__u8 family;
	__u8 proto;
	__u8 dir;
	__u8 pad;
	__u32 id;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct event {
	__u64 time_ns;
	__u32 ifindex;
	__u32 len;
	__u8 dir;
	__u8 family;
	__u8 proto;
	__u8 reason;
	__u16 ethertype;
	__u8 monitor; // denied by the policy, passed: monitor mode
	__u8 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 pad2[4];
};

// Written by userspace after a policy is applied; read by status tools.
struct info_value {
	__u64 generation;
	__u8 set_hash[32];
	__u32 layout;
	__u32 pad;
};

// The loader sizes addr4, addr6, ports and conntrack when it starts
// (enforce --max-prefixes, --max-port-entries, --max-flows: bpf.Sizes);
// the sizes here are the defaults, twice what one policy set may use, as
// the tries hold both halves.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 400000);
	__type(key, struct addr4_key);
	__type(value, struct addr_value);
} addr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 400000);
	__type(key, struct addr6_key);
	__type(value, struct addr_value);
} addr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2000000);
	__type(key, struct port_key);
	__type(value, struct port_value);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct selector_value);
} selector SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct half_config);
} halves SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
} conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct frag_key);
	__type(value, __u64);
} frags SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_SLOTS);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct info_value);
} info SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct policy_hit);
} policy_hits SEC(".maps");

// The grace barrier. No program reads it: updating a map-in-map makes the
// kernel wait, before the syscall returns, for every program that is
// running (synchronize_rcu). The worker updates slot 0 with barrier_inner
// before it rewrites the inactive half, so that no packet that read the
// selector before the last flip can still be reading that half.
struct barrier_inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} barrier_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct barrier_inner_map);
} barrier SEC(".maps");

// bpf2go only emits types that a global refers to.
const struct event *unused_event __attribute__((unused));
const struct info_value *unused_info __attribute__((unused));

enum parsed {
	PARSED_IP,
	PARSED_ARP,
	PARSED_OTHER,
	PARSED_MALFORMED,
};

enum frag {
	FRAG_NONE,  // a whole datagram
	FRAG_FIRST, // offset 0, more to come: carries the ports
	FRAG_LATER, // offset > 0: no ports, judged by its first fragment
};

struct packet {
	__u8 family;
	__u8 proto;
	__u16 ethertype;
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 has_ports;   // TCP, UDP or SCTP with both ports read
	__u8 bad_ext;     // unknown or too many IPv6 extension headers
	__u8 frag;        // enum frag
	__u8 icmp_type;   // ICMP or ICMPv6 type
	__u8 hop_limit;   // IPv6 hop limit, for neighbour discovery
	__u8 echo;        // ICMP echo: 1 request, 2 reply
	__u32 frag_id;    // IPv4 identification or IPv6 fragment id
	__u8 frag_nh;     // protocol, or the IPv6 fragment header's next header
	__u8 icmp_quote;  // an ICMP error quoting a TCP/UDP/SCTP packet
	__u8 q_proto;     // the quoted packet's protocol, addresses, ports
	__u8 q_echo;      // the quoted packet is an echo request
	__be16 q_sport;
	__be16 q_dport;
	__u8 q_saddr[16];
	__u8 q_daddr[16];
	__u32 policy; // 1 + the index of the policy whose rule let it in; 0 none
};

static __always_inline int is_tracked(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

// ICMP errors carry the start of the packet that caused them.
static __always_inline int is_icmp_error(__u8 family, __u8 type)
{
	if (family == FAMILY_IPV4) // unreachable, time exceeded, parameter problem
		return type == 3 || type == 11 || type == 12;
	// unreachable, packet too big, time exceeded, parameter problem
	return type >= 1 && type <= 4;
}

// Echo request and reply.
static __always_inline int is_icmp_echo(__u8 family, __u8 type)
{
	if (family == FAMILY_IPV4)
		return type == 8 || type == 0;
	return type == 128 || type == 129;
}

#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT 8

// parse_quote reads the tuple of the packet an ICMP error quotes, which
// starts 8 bytes into the ICMP message.
static __always_inline void parse_quote(struct __sk_buff *skb, struct packet *p, __u32 off)
{
	__be16 ports[2];
	__u32 l4off;

	if (p->family == FAMILY_IPV4) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.version != 4 || ip.ihl < 5)
			return;
		if (bpf_ntohs(ip.frag_off) & 0x1fff)
			return;
		p->q_proto = ip.protocol;
		__builtin_memcpy(p->q_saddr, &ip.saddr, 4);
		__builtin_memcpy(p->q_daddr, &ip.daddr, 4);
		l4off = off + ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) || ip6.version != 6)
			return;
		p->q_proto = ip6.nexthdr;
		__builtin_memcpy(p->q_saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->q_daddr, &ip6.daddr, 16);
		l4off = off + sizeof(ip6);
	}
	if ((p->family == FAMILY_IPV4 && p->q_proto == IPPROTO_ICMP) ||
	    (p->family == FAMILY_IPV6 && p->q_proto == IPPROTO_ICMPV6_)) {
		// A quoted echo request (ping or traceroute -I to somewhere
		// unreachable): its flow is keyed by identifier, as in parse.
		__u8 hdr[8];

		if (bpf_skb_load_bytes(skb, l4off, hdr, sizeof(hdr)) || hdr[0] != (p->family == FAMILY_IPV4 ? 8 : 128))
			return;
		__builtin_memcpy(&p->q_sport, &hdr[4], 2);
		p->q_dport = p->q_sport;
		p->q_echo = 1;
		p->icmp_quote = 1;
		return;
	}
	if (!is_tracked(p->q_proto) || bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)))
		return;
	p->q_sport = ports[0];
	p->q_dport = ports[1];
	p->icmp_quote = 1;
}

// ipv4_source_routed reports whether the options of an IPv4 header with
// ihl > 5 hold loose or strict source routing (or cannot be read).
static __always_inline int ipv4_source_routed(struct __sk_buff *skb, __u32 off, __u32 ihl)
{
	__u32 optend = (ihl - 5) * 4, skip = 0;
	__u8 o[2];

	for (__u32 i = 0; i < 40; i++) {
		if (i >= optend)
			break;
		if (skip) {
			skip--;
			continue;
		}
		if (bpf_skb_load_bytes(skb, off + 20 + i, o, 1))
			return 1;
		if (o[0] == 0) // end of options
			break;
		if (o[0] == 1) // no-op
			continue;
		if (o[0] == 0x83 || o[0] == 0x89) // LSRR, SSRR
			return 1;
		if (bpf_skb_load_bytes(skb, off + 20 + i + 1, &o[1], 1) || o[1] < 2)
			return 1;
		skip = o[1] - 1;
	}
	return 0;
}

static __always_inline enum parsed parse(struct __sk_buff *skb, struct packet *p)
{
	struct ethhdr eth;
	__u32 off = ETH_HLEN, l4off, end;

	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)))
		return PARSED_MALFORMED;
	p->ethertype = bpf_ntohs(eth.h_proto);

	// Tags still in the frame; on a real path the kernel has usually
	// moved the outer one into skb metadata already.
#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		__be16 tag[2]; // TCI, encapsulated ethertype

		if (p->ethertype != ETH_P_8021Q_ && p->ethertype != ETH_P_8021AD_)
			break;
		if (bpf_skb_load_bytes(skb, off, tag, sizeof(tag)))
			return PARSED_MALFORMED;
		p->ethertype = bpf_ntohs(tag[1]);
		off += 4;
	}

	switch (p->ethertype) {
	case ETH_P_ARP:
		return PARSED_ARP;
	case ETH_P_IP: {
		struct iphdr ip;
		__u16 frag;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return PARSED_MALFORMED;
		if (ip.version != 4 || ip.ihl < 5)
			return PARSED_MALFORMED;
		end = off + bpf_ntohs(ip.tot_len);
		// BIG TCP: a GSO packet over 64 KiB carries length 0.
		if (ip.tot_len == 0 && skb->gso_size)
			end = skb->len;
		else if (bpf_ntohs(ip.tot_len) < ip.ihl * 4)
			return PARSED_MALFORMED;
		p->family = FAMILY_IPV4;
		p->proto = ip.protocol;
		__builtin_memcpy(p->saddr, &ip.saddr, 4);
		__builtin_memcpy(p->daddr, &ip.daddr, 4);
		if (ip.ihl > 5 && ipv4_source_routed(skb, off, ip.ihl)) {
			// The destination is only the first waypoint.
			p->bad_ext = 1;
			return PARSED_IP;
		}
		frag = bpf_ntohs(ip.frag_off);
		if (frag & 0x1fff) {
			p->frag = FRAG_LATER;
			p->frag_id = ip.id;
			p->frag_nh = ip.protocol;
			return PARSED_IP;
		}
		if (frag & 0x2000) {
			p->frag = FRAG_FIRST;
			p->frag_id = ip.id;
			p->frag_nh = ip.protocol;
		}
		l4off = off + ip.ihl * 4;
		break;
	}
	case ETH_P_IPV6: {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return PARSED_MALFORMED;
		if (ip6.version != 6)
			return PARSED_MALFORMED;
		p->family = FAMILY_IPV6;
		p->proto = ip6.nexthdr;
		p->hop_limit = ip6.hop_limit;
		__builtin_memcpy(p->saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->daddr, &ip6.daddr, 16);
		l4off = off + sizeof(ip6);
		end = l4off + bpf_ntohs(ip6.payload_len);
		if (ip6.payload_len == 0 && skb->gso_size) // BIG TCP, as above
			end = skb->len;

		// Walk the extension headers to the upper-layer header.
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT; i++) {
			__u8 h[8];

			switch (p->proto) {
			case 0:  // hop-by-hop options
			case 43: // routing
			case 60: // destination options
				if (bpf_skb_load_bytes(skb, l4off, h, 4))
					return PARSED_MALFORMED;
				// A routing header with segments left sends the
				// packet on past its destination: judged on the
				// first waypoint, it would slip past the policy.
				if (p->proto == 43 && h[3]) {
					p->bad_ext = 1;
					return PARSED_IP;
				}
				p->proto = h[0];
				l4off += (h[1] + 1) * 8;
				continue;
			case 51: // authentication header: length in 4-byte units
				if (bpf_skb_load_bytes(skb, l4off, h, 2))
					return PARSED_MALFORMED;
				p->proto = h[0];
				l4off += (h[1] + 2) * 4;
				continue;
			case 44: { // fragment
				__u16 offflags;

				if (bpf_skb_load_bytes(skb, l4off, h, 8))
					return PARSED_MALFORMED;
				p->proto = h[0];
				l4off += 8;
				offflags = (h[2] << 8) | h[3];
				__builtin_memcpy(&p->frag_id, &h[4], 4);
				// Every fragment names the same next header here,
				// while headers after this one (destination
				// options) are in the first fragment only: the
				// fragments are matched on this, not on the
				// upper-layer protocol the first one reaches.
				p->frag_nh = h[0];
				if (offflags & 0xfff8) {
					p->frag = FRAG_LATER;
					return PARSED_IP;
				}
				if (offflags & 1)
					p->frag = FRAG_FIRST;
				continue;
			}
			case 135: // mobility
			case 139: // host identity protocol
			case 140: // shim6
			case 253: // experimental
			case 254:
				p->bad_ext = 1;
				return PARSED_IP;
			}
			break;
		}
		// Still an extension header after the bound: too many. Any
		// extension header, the ones the walk does not know too: read
		// as an upper-layer protocol, it would pass a rule that allows
		// every protocol.
		switch (p->proto) {
		case 0:
		case 43:
		case 44:
		case 51:
		case 60:
		case 135:
		case 139:
		case 140:
		case 253:
		case 254:
			p->bad_ext = 1;
			return PARSED_IP;
		}
		break;
	}
	case ETH_P_8021Q_:
	case ETH_P_8021AD_:
		// More tags than MAX_VLAN_TAGS.
		return PARSED_OTHER;
	default:
		return PARSED_OTHER;
	}

	if (is_tracked(p->proto)) {
		__be16 portpair[2];

		// A first fragment too short for its ports is malformed: the
		// IP length bounds the read, not the frame (which may be padded).
		if (l4off + sizeof(portpair) > end ||
		    bpf_skb_load_bytes(skb, l4off, portpair, sizeof(portpair)))
			return PARSED_MALFORMED;
		p->sport = portpair[0];
		p->dport = portpair[1];
		p->has_ports = 1;
	} else if ((p->family == FAMILY_IPV4 && p->proto == IPPROTO_ICMP) ||
		   (p->family == FAMILY_IPV6 && p->proto == IPPROTO_ICMPV6_)) {
		if (l4off + 1 > end || bpf_skb_load_bytes(skb, l4off, &p->icmp_type, 1))
			return PARSED_MALFORMED;
		if (is_icmp_error(p->family, p->icmp_type)) {
			parse_quote(skb, p, l4off + 8);
		} else if (is_icmp_echo(p->family, p->icmp_type)) {
			__be16 id;

			// An echo and its reply are a flow, tracked by their
			// identifier in both port slots and by the kind, which
			// the reversed key swaps: the reversed key of a request
			// is the key of its reply, never of a request.
			if (l4off + 8 > end || bpf_skb_load_bytes(skb, l4off + 4, &id, sizeof(id)))
				return PARSED_MALFORMED;
			p->sport = id;
			p->dport = id;
			p->echo = (p->icmp_type == 8 || p->icmp_type == 128) ? 1 : 2;
			p->has_ports = 1;
		}
	}
	return PARSED_IP;
}

// parse_fast reads the common packet by direct packet access: Ethernet
// without tags in the frame, IPv4 without options or IPv6 without extension
// headers, not a fragment, TCP, UDP or SCTP with its ports inside the IP
// length, all in the linear data. It fills p as parse would and returns 1;
// for anything else it returns 0, p untouched, and parse reads the packet
// in full. bpf_skb_load_bytes costs a helper call and a copy per header,
// about a quarter of a new flow's verdict (BENCHMARKS.md).
static __always_inline int parse_fast(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__be16 *ports;

	if ((void *)(eth + 1) > data_end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		ports = (void *)(ip + 1);
		if ((void *)(ports + 2) > data_end)
			return 0;
		// Options, a fragment, another protocol, or a length that does
		// not hold the ports (malformed, or BIG TCP's 0): parse decides.
		if (ip->version != 4 || ip->ihl != 5 || (ip->frag_off & bpf_htons(0x3fff)) ||
		    !is_tracked(ip->protocol) || bpf_ntohs(ip->tot_len) < sizeof(*ip) + 4)
			return 0;
		p->ethertype = ETH_P_IP;
		p->family = FAMILY_IPV4;
		p->proto = ip->protocol;
		__builtin_memcpy(p->saddr, &ip->saddr, 4);
		__builtin_memcpy(p->daddr, &ip->daddr, 4);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		ports = (void *)(ip6 + 1);
		if ((void *)(ports + 2) > data_end)
			return 0;
		if (ip6->version != 6 || !is_tracked(ip6->nexthdr) || bpf_ntohs(ip6->payload_len) < 4)
			return 0;
		p->ethertype = ETH_P_IPV6;
		p->family = FAMILY_IPV6;
		p->proto = ip6->nexthdr;
		p->hop_limit = ip6->hop_limit;
		__builtin_memcpy(p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	} else {
		return 0;
	}
	p->sport = ports[0];
	p->dport = ports[1];
	p->has_ports = 1;
	return 1;
}

static __always_inline void count(__u32 slot, struct __sk_buff *skb)
{
	struct counter *c;

	if (check_mode)
		return;
	c = bpf_map_lookup_elem(&counters, &slot);
	if (c) {
		c->packets++;
		c->bytes += skb->len;
	}
}

// deny drops the packet, or under monitor mode lets it pass, counted and
// reported all the same. The check twin answers what enforcing would do.
static __always_inline int deny(struct __sk_buff *skb, __u8 dir, struct packet *p, __u8 reason,
				__u8 monitor)
{
	struct event *e;
	int verdict = monitor ? TCX_NEXT : TCX_DROP;

	if (check_mode)
		return TCX_DROP;
	count(monitor ? CNT_MONITOR(dir) : CNT_VERDICT(dir, 1), skb);
	count(CNT_REASON(reason), skb);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		// Never silent: userspace reports this counter as lost events.
		count(CNT_EVENTS_LOST, skb);
		return verdict;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->time_ns = bpf_ktime_get_boot_ns();
	e->ifindex = skb->ifindex;
	e->len = skb->len;
	e->dir = dir;
	e->family = p->family;
	e->proto = p->proto;
	e->reason = reason;
	e->ethertype = p->ethertype;
	e->monitor = monitor;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	e->sport = p->sport;
	e->dport = p->dport;
	bpf_ringbuf_submit(e, 0);
	return verdict;
}

// rules_match returns the allowance of the given half that lets a new flow
// in direction dir with this peer address, protocol and destination port
// in (its value names the policy), or NULL when no rule does.
static __always_inline struct port_value *rules_match(__u32 half, __u8 dir, __u8 family, const __u8 *peer,
							__u8 proto, __be16 port)
{
	struct addr_value *cls;

	if (family == FAMILY_IPV4) {
		struct addr4_key k = {
			.prefixlen = 32 + 32,
			.half = half,
			.dir = dir,
		};
		__builtin_memcpy(k.addr, peer, 4);
		cls = bpf_map_lookup_elem(&addr4, &k);
	} else {
		struct addr6_key k = {
			.prefixlen = 32 + 128,
			.half = half,
			.dir = dir,
		};
		__builtin_memcpy(k.addr, peer, 16);
		cls = bpf_map_lookup_elem(&addr6, &k);
	}
	if (!cls || cls->class == 0)
		return NULL;

	struct port_key pk = {
		.prefixlen = 64 + 16 + 16,
		.half = half,
		.dir = dir,
		.class = cls->class,
		.proto = proto,
		.port = port,
	};
	return bpf_map_lookup_elem(&ports, &pk);
}

// hit counts a new flow a policy's rule let in, and when: per half, so that
// the counts of a set never mix with the next one's (whose indices differ).
static __always_inline void hit(__u32 half, __u32 policy, __u64 now)
{
	__u32 slot = half * MAX_POLICIES + policy;
	struct policy_hit *h;

	if (check_mode || policy >= MAX_POLICIES)
		return;
	h = bpf_map_lookup_elem(&policy_hits, &slot);
	if (h) {
		h->packets++;
		h->last_ns = now;
	}
}

// age is how long ago then was; 0 for a time ahead of now, which only a
// timestamp of another clock can be (an earlier build's, on pins it
// adopted): such an entry counts as fresh and is restamped on its next
// packet, rather than every flow of the upgrade being judged again at once.
static __always_inline __u64 age(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

static __always_inline __u64 ct_timeout(__u8 proto)
{
	if (proto == IPPROTO_TCP || proto == IPPROTO_SCTP)
		return ct_timeout_tcp_ns;
	if (proto == IPPROTO_UDP)
		return ct_timeout_udp_ns;
	return ct_timeout_other_ns;
}

static __always_inline void ct_key_of(struct ct_key *k, const struct packet *p, int reversed)
{
	k->family = p->family;
	k->proto = p->proto;
	k->echo = p->echo && reversed ? 3 - p->echo : p->echo;
	if (!reversed) {
		__builtin_memcpy(k->saddr, p->saddr, 16);
		__builtin_memcpy(k->daddr, p->daddr, 16);
		k->sport = p->sport;
		k->dport = p->dport;
	} else {
		__builtin_memcpy(k->saddr, p->daddr, 16);
		__builtin_memcpy(k->daddr, p->saddr, 16);
		k->sport = p->dport;
		k->dport = p->sport;
	}
}

static __always_inline void ct_create(const struct packet *p, __u8 dir, __u64 generation, __u64 now)
{
	struct ct_key k = {};
	struct ct_value v = {
		.last_seen_ns = now,
		.generation = generation,
		.dir = dir,
		.policy = p->policy,
	};

	ct_key_of(&k, p, 0);
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
	ct_key_of(&k, p, 1);
	v.dir = dir ^ 1;
	v.reply = 1;
	bpf_map_update_elem(&conntrack, &k, &v, BPF_ANY);
}

enum ct_result {
	CT_MISS,
	CT_ALLOW,
	CT_REVOKED,
};

// ct_check looks the packet up in connection tracking. An entry admitted by
// an older policy generation is judged again, as the packet that opened the
// flow, against the policy in force: a revoked flow stops at its next packet.
static __always_inline enum ct_result ct_check(const struct packet *p, __u8 dir, __u32 half,
						const struct half_config *hc, __u64 now)
{
	struct ct_key k = {};
	struct ct_value *v;

	ct_key_of(&k, p, 0);
	v = bpf_map_lookup_elem(&conntrack, &k);
	if (!v || v->dir != dir)
		return CT_MISS;
	if (age(now, v->last_seen_ns) > ct_timeout(p->proto))
		return CT_MISS;

	if (v->generation != hc->generation) {
		// The opening packet travelled in orig_dir with this tuple, or
		// with the reversed one when this key is the reply's.
		__u8 orig_dir = v->reply ? dir ^ 1 : dir;
		const __u8 *osrc = v->reply ? p->daddr : p->saddr;
		const __u8 *odst = v->reply ? p->saddr : p->daddr;
		__be16 odport = v->reply ? p->sport : p->dport;
		const __u8 *peer = orig_dir == DIR_INGRESS ? osrc : odst;

		__u32 policy = 0;

		if (hc->governed[orig_dir & 1]) {
			struct port_value *pv = rules_match(half, orig_dir, p->family, peer, p->proto,
							    is_tracked(p->proto) ? odport : 0);
			if (!pv) {
				bpf_map_delete_elem(&conntrack, &k);
				return CT_REVOKED;
			}
			policy = pv->policy + 1;
		}
		v->generation = hc->generation;
		v->policy = policy;
	}
	if (v->policy)
		hit(half, v->policy - 1, now);
	// Refresh at most once a second: fewer writes to a shared cache line.
	// Both entries of the flow, so a reply that comes late after steady
	// traffic the other way still finds its entry.
	if (age(now, v->last_seen_ns) > 1000000000ULL || v->last_seen_ns > now) {
		struct ct_value *partner;

		v->last_seen_ns = now;
		ct_key_of(&k, p, 1);
		partner = bpf_map_lookup_elem(&conntrack, &k);
		if (partner)
			partner->last_seen_ns = now;
	}
	return CT_ALLOW;
}

// is_neighbour_discovery matches the ICMPv6 link control IPv6 cannot work
// without: router and neighbour solicitation/advertisement and redirect
// (133-137), and multicast listener query/report/done (130-132, 143).
// RFC 4861 and 3810 make receivers ignore these unless the hop limit is
// 255 (neighbour discovery) or 1 (listener discovery), and RFC 6980
// forbids fragmenting them; requiring both keeps them from carrying much
// past the policy. Known gap: a sender may still set hop limit 255 on a
// neighbour solicitation to a distant global address, which a router
// forwards; confining these to on-link destinations (bpf_fib_lookup)
// would close it. Addresses alone cannot: unicast solicitations and
// advertisements between global on-link addresses are normal.
static __always_inline int is_neighbour_discovery(const struct packet *p)
{
	if (p->family != FAMILY_IPV6 || p->proto != IPPROTO_ICMPV6_ || p->frag != FRAG_NONE)
		return 0;
	switch (p->icmp_type) {
	case 133 ... 137:
		return p->hop_limit == 255;
	case 130 ... 132:
	case 143:
		// Listener discovery is sent from a link-local address
		// (RFC 3810), which a distant sender cannot use.
		return p->hop_limit == 1 && p->saddr[0] == 0xfe && (p->saddr[1] & 0xc0) == 0x80;
	}
	return 0;
}

static __always_inline void frag_key_of(struct frag_key *k, const struct packet *p, __u8 dir)
{
	k->family = p->family;
	k->proto = p->frag_nh;
	k->dir = dir;
	k->id = p->frag_id;
	__builtin_memcpy(k->saddr, p->saddr, 16);
	__builtin_memcpy(k->daddr, p->daddr, 16);
}

// frag_allowed reports whether the first fragment of this datagram passed.
static __always_inline int frag_allowed(const struct packet *p, __u8 dir, __u64 now)
{
	struct frag_key k = {};
	__u64 *seen;

	frag_key_of(&k, p, dir);
	seen = bpf_map_lookup_elem(&frags, &k);
	return seen && age(now, *seen) <= frag_timeout_ns;
}

static __always_inline int addr_equal(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < 16; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

// ct_quoted reports whether an ICMP error quotes a packet of a tracked flow
// that travelled the other way.
static __always_inline int ct_quoted(const struct packet *p, __u8 dir, __u64 generation, __u64 now)
{
	struct ct_key k = {
		.family = p->family,
		.proto = p->q_proto,
		.echo = p->q_echo,
		.sport = p->q_sport,
		.dport = p->q_dport,
	};
	struct ct_value *v;

	__builtin_memcpy(k.saddr, p->q_saddr, 16);
	__builtin_memcpy(k.daddr, p->q_daddr, 16);
	// An error goes back to the sender of the packet it quotes; one
	// addressed elsewhere is not about this flow.
	if (!addr_equal(p->daddr, p->q_saddr))
		return 0;
	v = bpf_map_lookup_elem(&conntrack, &k);
	// A flow admitted by an older policy vouches for nothing until its
	// own next packet has been judged again.
	return v && v->dir == (dir ^ 1) && v->generation == generation &&
	       age(now, v->last_seen_ns) <= ct_timeout(p->q_proto);
}

// pass lets an allowed packet through, remembering what later packets need:
// the flow for its replies, the first fragment for the rest of the datagram.
static __always_inline int pass(struct __sk_buff *skb, __u8 dir, const struct packet *p,
				const struct half_config *hc, int new_flow, __u64 now)
{
	if (check_mode)
		return TCX_NEXT;
	// An echo reply opens nothing: its reversed key is a request.
	if (new_flow && p->has_ports && p->echo != 2)
		ct_create(p, dir, hc->generation, now);
	if (p->frag == FRAG_FIRST) {
		struct frag_key k = {};

		frag_key_of(&k, p, dir);
		bpf_map_update_elem(&frags, &k, &now, BPF_ANY);
	}
	count(CNT_VERDICT(dir, 0), skb);
	return TCX_NEXT;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct packet p = {};
	struct half_config *hc;
	struct selector_value *sel;
	__u32 zero = 0, half;
	int governed;
	__u64 now;

	sel = bpf_map_lookup_elem(&selector, &zero);
	if (!sel)
		return TCX_DROP;
	half = sel->active & 1;
	hc = bpf_map_lookup_elem(&halves, &half);
	if (!hc)
		return TCX_DROP;
	governed = hc->governed[dir];
	// The coarse clock (jiffies, a few ms) is enough for timeouts of
	// seconds and reads no TSC: the precise one cost a fifth of a verdict
	// on a virtual machine (BENCHMARKS.md). It is CLOCK_MONOTONIC_COARSE;
	// user space converts with bpf.DatapathTime.
	now = bpf_ktime_get_coarse_ns();

	switch (parse_fast(skb, &p) ? PARSED_IP : parse(skb, &p)) {
	case PARSED_ARP:
		return pass(skb, dir, &p, hc, 0, now);
	case PARSED_OTHER:
		return governed ? deny(skb, dir, &p, REASON_ETHERTYPE, hc->monitor) : pass(skb, dir, &p, hc, 0, now);
	case PARSED_MALFORMED:
		return governed ? deny(skb, dir, &p, REASON_MALFORMED, hc->monitor) : pass(skb, dir, &p, hc, 0, now);
	case PARSED_IP:
		break;
	}

	if (is_neighbour_discovery(&p))
		return pass(skb, dir, &p, hc, 0, now);
	if (p.bad_ext)
		return governed ? deny(skb, dir, &p, REASON_UNSUPPORTED, hc->monitor) : pass(skb, dir, &p, hc, 0, now);

	// A later fragment has no ports: it follows its first fragment. The
	// twin keeps no state, so it judges every later fragment unseen.
	if (p.frag == FRAG_LATER) {
		if (!governed || (!check_mode && frag_allowed(&p, dir, now)))
			return pass(skb, dir, &p, hc, 0, now);
		return deny(skb, dir, &p, REASON_FRAGMENT, hc->monitor);
	}

	if (!check_mode) {
		if (p.icmp_quote && ct_quoted(&p, dir, hc->generation, now))
			return pass(skb, dir, &p, hc, 0, now);
		if (p.has_ports) {
			switch (ct_check(&p, dir, half, hc, now)) {
			case CT_ALLOW:
				return pass(skb, dir, &p, hc, 0, now);
			case CT_REVOKED:
				return deny(skb, dir, &p, REASON_REVOKED, hc->monitor);
			case CT_MISS:
				break;
			}
		}
	}

	if (governed) {
		const __u8 *peer = dir == DIR_INGRESS ? p.saddr : p.daddr;

		struct port_value *pv = rules_match(half, dir, p.family, peer, p.proto, is_tracked(p.proto) ? p.dport : 0);

		if (!pv)
			return deny(skb, dir, &p, REASON_NO_RULE, hc->monitor);
		p.policy = pv->policy + 1;
		hit(half, pv->policy, now);
	}
	// Allowed, by a rule or because no policy governs this direction:
	// replies of this flow may pass the other way.
	return pass(skb, dir, &p, hc, 1, now);
}

SEC("tcx/ingress")
int pci_ingress(struct __sk_buff *skb)
{
	return handle(skb, DIR_INGRESS);
}

SEC("tcx/egress")
int pci_egress(struct __sk_buff *skb)
{
	return handle(skb, DIR_EGRESS);
}

char __license[] SEC("license") = "Dual BSD/GPL";
