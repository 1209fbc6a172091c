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
//	                                         names (a name used twice too), labels, selectors,
//	                                         policyTypes, rules of a direction policyTypes leaves out,
//	                                         unreadable paths; a file holding no policy is a warning
//	peer                    error    1.2.1   a malformed cidr, host bits set, an except that is not a
//	                                         strict subset of its cidr or is of the other family,
//	                                         podSelector and namespaceSelector peers
//	port                    error    1.2.5   a protocol other than TCP, UDP, SCTP; a port outside
//	                                         1-65535; a named port; endPort without port or below it
//	cde-open-ingress        error    1.3.1   CDE ingress peers that together admit a whole address
//	                                         family on every port of a protocol
//	cde-open-egress         error    1.3.2   the same for egress
//	cde-public-ingress      warning  1.4.2   CDE ingress peers that together admit a whole address
//	                                         family on some ports, with no justification
//	cde-public-egress       warning  1.3.2   the same for egress
//	cde-every-port          warning  1.2.5   a CDE rule that allows every port of a protocol
//	insecure-service        warning  1.2.6   a rule admitting a port of a cleartext service, with no
//	                                         justification
//	cde-pci-dss-annotation  warning  12.5.2  a CDE policy with no annotation key starting "pci-dss"
//	host-no-policy          warning  1.2.1   with --labels: no policy applies to the host
//	cde-ungoverned-ingress  warning  1.3.1   with --labels naming a CDE host: no policy governs ingress
//	cde-ungoverned-egress   warning  1.3.2   with --labels naming a CDE host: no policy governs egress
//	cde-ssh-cut             warning  1.2.5   with --labels naming a CDE host: ingress is governed and
//	                                         no rule admits TCP 22 from any address
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
// A CDE policy is one whose podSelector requires pci-env: cde, or, when
// --labels names a CDE host (pci-env=cde), one that applies to that host.
//
// Exposure (cde-open-*, cde-public-*) is judged per CDE host, direction and
// address family, on the peers of every policy applying to that host
// together: the union a host enforces, not each policy alone, and not peers
// of policies that never apply to one host together. Without --labels the
// set does not say which hosts exist, so each CDE selector stands for the
// host carrying exactly its labels — the fewest policies any host it
// selects gets; with --labels the named CDE host is judged too. The
// judgement is on address space, not strings: 0.0.0.0/1 with 128.0.0.0/1
// is the whole of IPv4, ::/1 with 8000::/1 the whole of IPv6, 0.0.0.0/0
// except 10.0.0.0/8 is not the whole of IPv4, and a rule without peers
// admits every address of both families. Ports are combined the same way,
// per protocol, over entries and rules; "every port" is 1-65535 (a rule
// without ports admits every port of every protocol). A finding names the
// widest peer list that takes part and the other rules needed to complete
// the family.
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
// Duplicate policy names stay an error. Enforcing both documents would be
// safe for packets (allowances are a union), but the audit log, metrics and
// `check` name the policy that allowed a flow by its namespace/name, and
// with two such policies that record no longer says which rule let traffic
// in (Req 10.2.2 wants the affected resource identified).
//
// Set.Audit runs once a set loads, on the set as it would be enforced; it
// adds nothing to what enforce refuses, which is what Load refuses.
package policy
