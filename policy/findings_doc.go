// # Findings
//
// `pci-segment validate` is an auditor's tool. Parse rejects what it cannot
// read exactly as written; Set.Audit then judges a set that loads against
// PCI-DSS v4.0. Every finding carries a level and the requirement its check
// serves, in this one table (the checks variables in findings_checks.go
// hold the same rows as data):
//
//	check                   level    req     reports
//	schema                  error    1.2.1   YAML syntax, unknown or repeated fields, apiVersion, kind,
//	                                         names, labels, selectors,
//	                                         policyTypes, rules of a direction policyTypes leaves out,
//	                                         unreadable paths; a file holding no policy is a warning
//	peer                    error    1.2.1   a malformed cidr, host bits set, an except that is not a
//	                                         strict subset of its cidr or is of the other family,
//	                                         podSelector and namespaceSelector peers
//	port                    error    1.2.5   a protocol other than TCP, UDP, SCTP; a port outside
//	                                         1-65535; a named port; endPort without port or below it
//	cde-open-ingress        error    1.3.1   CDE ingress peers that together admit a whole address
//	                                         family, or all or nearly all of its public addresses,
//	                                         on every port of a protocol
//	cde-open-egress         error    1.3.2   the same for egress
//	cde-public-ingress      warning  1.4.2   CDE ingress peers that together admit a whole address
//	                                         family, or all or nearly all of its public addresses,
//	                                         on some ports, with no justification
//	cde-public-egress       warning  1.3.2   the same for egress
//	cde-every-port          warning  1.2.5   a CDE rule that allows every port of a protocol
//	insecure-service        warning  1.2.6   a rule admitting a port of a cleartext service, with no
//	                                         justification
//	cde-pci-dss-annotation  warning  12.5.2  a CDE policy with no annotation key starting "pci-dss",
//	                                         or whose pci-dss/requirement is not a list of
//	                                         requirement numbers (1.3.1, A3.2.1)
//	host-no-policy          warning  1.2.1   with --labels: no policy applies to the host
//	cde-ungoverned-ingress  warning  1.3.1   a CDE host whose ingress no applying policy governs
//	cde-ungoverned-egress   warning  1.3.2   a CDE host whose egress no applying policy governs
//	cde-ssh-cut             warning  1.2.5   a CDE host whose ingress is governed and admits TCP 22
//	                                         from no address
//	duplicate-name          warning  10.2.2  a policy whose namespace/name an earlier one has
//
// Why these requirements: 1.2.1 asks that rulesets be defined and
// implemented, and a document that could be read two ways, or a name that
// two policies share (the name is how the audit log, metrics and `check`
// cite a policy), is neither. 1.2.5 asks that every allowed service,
// protocol and port be identified: a port must be a number and a protocol
// exact, a rule allowing every port identifies nothing, and a CDE host
// nobody can administer over SSH has lost a service it needs. 1.2.6
// covers insecure services. 1.3.1 and 1.3.2 restrict inbound and outbound
// CDE traffic to what is necessary; 1.4.2 admits traffic from untrusted
// networks only to public services. 12.5.2 asks that scope documentation
// identify every segmentation control: the pci-dss annotation is where a
// policy says which requirement it implements.
//
// The CDE hosts judged are the ones the set names. The set does not say
// which hosts exist, so each selector requiring pci-env: cde stands for the
// host carrying exactly its labels — the fewest policies any host it
// selects gets; when --labels names a CDE host (pci-env=cde), that host is
// judged too. A CDE policy is one that applies to some CDE host judged: a
// selector requiring pci-env: cde, but also an empty selector, or one
// requiring other labels of such a host, whenever there is one.
//
// cde-ungoverned-* and cde-ssh-cut judge every CDE host. For the host
// --labels names the ungoverned warnings are host-level (HostWarnings, also
// logged by enforce); for a host inferred from a selector they point at
// that selector, unless the selector also selects the named host and that
// host leaves the same direction ungoverned: a host with fewer labels gets
// no more policies, so that is the same gap, reported once. cde-ssh-cut
// points at the first policy governing the host's ingress, once for all
// hosts that would be cut there.
//
// Exposure (cde-open-*, cde-public-*) is judged per CDE host, direction and
// address family, on the peers of every policy applying to that host
// together: the union a host enforces, not each policy alone, and not peers
// of policies that never apply to one host together. The judgement is on
// address space, not strings: 0.0.0.0/1 with 128.0.0.0/1 is the whole of
// IPv4, ::/1 with 8000::/1 the whole of IPv6, and a rule without peers
// admits every address of both families. Peers need not cover the whole
// family to expose the CDE to the internet: 0.0.0.0/0 except 10.0.0.0/8,
// or except one /32, still admits every host on the internet, and so does
// 2000::/3, from which all global IPv6 unicast addresses are assigned.
// So exposure is also judged against a family's public addresses: its
// unicast space less the ranges the IANA special-purpose registries mark
// not globally reachable (private use, loopback, link-local, shared
// address space, documentation, benchmarking, multicast, reserved; for
// IPv6 everything outside 2000::/3, and the documentation and IETF
// protocol blocks inside it). Peers count as exposing a port when they
// leave out at most one regional-registry block of public addresses, a /8
// of IPv4 or a /12 of IPv6: under 0.5% of either public space. A
// blocklist (everything but some known-bad hosts or networks) leaves out
// far less and is caught; a list of the peers a CDE host really talks to
// leaves out nearly everything and is not. A finding says which it saw:
// "every IPv4 address", "every public IPv4 address" or "nearly every
// public IPv4 address".
// Ports are combined the same way, per protocol, over entries and rules;
// "every port" is 1-65535 (a rule without ports admits every port of every
// protocol). A finding names the widest peer list that takes part and the
// other rules needed to complete the space.
//
// The annotation pci-segment/justification, with a non-blank value,
// records why a policy exposes a public service or uses an insecure one:
// it silences cde-public-* (when the justified policies alone expose those
// ports) and insecure-service, never an error or cde-every-port.
// insecure-service judges every policy, not only CDE ones, and counts a
// range or an every-port entry that includes such a port.
// insecureServices lists the services insecure-service knows: FTP, telnet,
// TFTP, POP3, IMAP, SNMP v1/v2c and the r-commands. Plain HTTP is not on
// the list: port 80 mostly carries redirects to HTTPS and signed package
// downloads, and a warning on every such rule would teach people to skip
// the warnings.
//
// Duplicate policy names are a warning. Enforcing both documents is safe
// for packets (allowances are a union), but the audit log, metrics and
// `check` name the policy that allowed a flow by its namespace/name, and
// with two such policies that record no longer says which rule let traffic
// in (Req 10.2.2 wants the affected resource identified). Refusing the set
// instead would leave a host unfiltered at boot over a naming slip.
//
// Set.Audit runs once a set loads, on the set as it would be enforced; it
// adds nothing to what enforce refuses, which is what Load refuses.
package policy
