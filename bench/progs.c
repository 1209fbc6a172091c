//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Programs the verdict benchmark (bench/verdict_test.go) measures beside
// the datapath, each a tcx ingress program judged by BPF_PROG_TEST_RUN:
//
//   empty      the floor: returns TCX_NEXT and reads nothing.
//   reference  what a minimal allowlist does: Ethernet, IPv4 or IPv6 (no
//              VLAN tags, no extension headers, no fragments), one LPM
//              lookup of the source address, one hash lookup of (protocol,
//              destination port). No state, no counters, no events.
//   linear     a rule scan, as a chain of rules would do it: the first of
//              nrules rules (prefix, mask, protocol, port) that matches
//              wins. IPv4 only. nrules is a load-time constant, so the
//              verifier walks every iteration: how many it accepts is one
//              of the results.

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

struct ref4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct ref6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ref_port_key {
	__u8 proto;
	__u8 pad;
	__be16 port;
};

// Addresses and ports in network byte order.
struct rule {
	__be32 addr;
	__be32 mask;
	__u8 proto;
	__u8 pad;
	__be16 port;
};

// Sized by the loader (bench.LoadReference) for the prefixes it writes.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct ref4_key);
	__type(value, __u8);
} ref_addr4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct ref6_key);
	__type(value, __u8);
} ref_addr6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, struct ref_port_key);
	__type(value, __u8);
} ref_ports SEC(".maps");

// Sized by the loader (bench.LoadLinear) to nrules.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rule);
} rules SEC(".maps");

volatile const __u32 nrules = 0;

SEC("tcx/ingress")
int empty(struct __sk_buff *skb)
{
	return TCX_NEXT;
}

SEC("tcx/ingress")
int reference(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct ref_port_key pk = {};
	__be16 *ports;

	if ((void *)(eth + 1) > end)
		return TCX_DROP;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		struct ref4_key k = { .prefixlen = 32 };

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return TCX_DROP;
		__builtin_memcpy(k.addr, &ip->saddr, 4);
		if (!bpf_map_lookup_elem(&ref_addr4, &k))
			return TCX_DROP;
		pk.proto = ip->protocol;
		ports = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct ref6_key k = { .prefixlen = 128 };

		if ((void *)(ip6 + 1) > end)
			return TCX_DROP;
		__builtin_memcpy(k.addr, &ip6->saddr, 16);
		if (!bpf_map_lookup_elem(&ref_addr6, &k))
			return TCX_DROP;
		pk.proto = ip6->nexthdr;
		ports = (void *)(ip6 + 1);
	} else {
		return TCX_DROP;
	}
	if (pk.proto != IPPROTO_TCP && pk.proto != IPPROTO_UDP)
		return TCX_DROP;
	if ((void *)(ports + 2) > end)
		return TCX_DROP;
	pk.port = ports[1];
	return bpf_map_lookup_elem(&ref_ports, &pk) ? TCX_NEXT : TCX_DROP;
}

SEC("tcx/ingress")
int linear(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	__be16 *ports;
	__be32 saddr;
	__u8 proto;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl < 5)
		return TCX_DROP;
	saddr = ip->saddr;
	proto = ip->protocol;
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return TCX_DROP;
	ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > end)
		return TCX_DROP;

	for (__u32 i = 0; i < nrules; i++) {
		__u32 key = i;
		struct rule *r = bpf_map_lookup_elem(&rules, &key);

		if (!r)
			return TCX_DROP;
		if ((saddr & r->mask) == r->addr && r->proto == proto && r->port == ports[1])
			return TCX_NEXT;
	}
	return TCX_DROP;
}

char __license[] SEC("license") = "Dual BSD/GPL";
