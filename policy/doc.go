// Package policy reads pci-segment's network policies, decides what they
// allow, and compiles them to the entries the eBPF datapath looks up.
//
// # Documents
//
// A policy file holds one or more YAML documents separated by "---"; empty
// documents are skipped. Each is a NetworkPolicy in the shape of
// Kubernetes', under its own apiVersion:
//
//	apiVersion: pci-segment/v1
//	kind: NetworkPolicy
//	metadata: {name: cde-web, namespace: cde, annotations: {pci-dss/requirement: "1.3.1"}}
//	spec:
//	  podSelector: {matchLabels: {pci-env: cde}}
//	  policyTypes: [Ingress]
//	  ingress:
//	  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.1.0/24]}}]
//	    ports: [{protocol: TCP, port: 443}]
//
// Parsing is strict, because a field the enforcer ignores is an allowance
// or a restriction an auditor believes in and nobody enforces: unknown
// fields, named ports, pod or namespace selector peers, cidrs with host bits
// set, excepts outside their cidr and rules of a direction policyTypes does
// not list are all errors. Every error names the file, line, document and
// field path and says what to write instead, and all of them are reported
// at once (see Finding, Errors).
//
// # Semantics
//
// A host carries labels. A policy applies to it when spec.podSelector's
// matchLabels are a subset of them; an empty selector applies to every
// host. A policy governs Ingress and/or Egress as spec.policyTypes lists;
// when policyTypes is omitted it governs Ingress, and Egress too when the
// document has an egress key — even "egress: []", which Kubernetes would
// ignore: the key says the author thought about egress.
//
// A direction governed by some applying policy is default-deny and its
// rules only add allowances, united over rules and policies. A direction no
// applying policy governs is not filtered. A rule allows a packet when one
// of its peers and one of its ports match. A peer is an ipBlock: its cidr
// minus its excepts, in one address family; IPv4-mapped IPv6 prefixes are
// IPv6, so 0.0.0.0/0 never admits an IPv6 packet. An except narrows only its
// own peer: the address is still allowed by any other peer or rule that
// covers it. No peers means every address of both families; no ports means
// every port of every protocol; a port entry without a port means every
// port of its protocol (TCP unless given).
//
// Set.Evaluate is the reference reading of these rules, used by `check` and
// by the tests to verify Compile.
//
// # Compiled form
//
// Compile turns the policies applying to one host into a Compiled: an
// address table mapping prefixes to classes (sets of rules), looked up by
// longest-prefix match, and a port table of allowances per class. Cutting
// the address space at every cidr and except boundary, instead of storing
// each as its own allow or deny key, is what keeps "except" from hiding
// other rules that cover the same address.
package policy
