package policy

import (
	"fmt"
	"regexp"
)

// check is one kind of finding: its name in the table of the package
// documentation ("Findings"), how serious it is, and the PCI-DSS v4.0
// requirement it serves. TestChecksMatchTheDocumentedTable keeps the
// documentation and these rows in step.
type check struct {
	name        string
	level       Level
	requirement string
}

var (
	checkSchema            = check{"schema", LevelError, "1.2.1"}
	checkPeer              = check{"peer", LevelError, "1.2.1"}
	checkPort              = check{"port", LevelError, "1.2.5"}
	checkOpenIngress       = check{"cde-open-ingress", LevelError, "1.3.1"}
	checkOpenEgress        = check{"cde-open-egress", LevelError, "1.3.2"}
	checkPublicIngress     = check{"cde-public-ingress", LevelWarning, "1.4.2"}
	checkPublicEgress      = check{"cde-public-egress", LevelWarning, "1.3.2"}
	checkEveryPort         = check{"cde-every-port", LevelWarning, "1.2.5"}
	checkInsecure          = check{"insecure-service", LevelWarning, "1.2.6"}
	checkAnnotation        = check{"cde-pci-dss-annotation", LevelWarning, "12.5.2"}
	checkNoPolicy          = check{"host-no-policy", LevelWarning, "1.2.1"}
	checkUngovernedIngress = check{"cde-ungoverned-ingress", LevelWarning, "1.3.1"}
	checkUngovernedEgress  = check{"cde-ungoverned-egress", LevelWarning, "1.3.2"}
	checkSSH               = check{"cde-ssh-cut", LevelWarning, "1.2.5"}
	checkDuplicateName     = check{"duplicate-name", LevelWarning, "10.2.2"}
)

// checks is every check, in the order of the documented table.
var checks = []check{
	checkSchema, checkPeer, checkPort,
	checkOpenIngress, checkOpenEgress, checkPublicIngress, checkPublicEgress,
	checkEveryPort, checkInsecure, checkAnnotation,
	checkNoPolicy, checkUngovernedIngress, checkUngovernedEgress, checkSSH,
	checkDuplicateName,
}

// byDirection picks the ingress or the egress variant of a check.
func byDirection(d Direction, ingress, egress check) check {
	if d == Egress {
		return egress
	}
	return ingress
}

// finding makes a finding of this check.
func (c check) finding(file string, doc, line int, field, format string, args ...any) *Finding {
	return &Finding{
		File: file, Doc: doc, Line: line, Field: field,
		Requirement: c.requirement, Warning: c.level == LevelWarning,
		Err: fmt.Errorf(format, args...),
	}
}

var (
	portFieldRE = regexp.MustCompile(`^spec\.(ingress|egress)\[\d+\]\.ports([.\[]|$)`)
	peerFieldRE = regexp.MustCompile(`^spec\.(ingress|egress)\[\d+\]\.(from|to)([.\[]|$)`)
)

// schemaCheck is the check a rejection by the parser or the loader belongs
// to, decided by the field it names: a port entry, a peer, or anything else.
func schemaCheck(field string) check {
	switch {
	case portFieldRE.MatchString(field):
		return checkPort
	case peerFieldRE.MatchString(field):
		return checkPeer
	}
	return checkSchema
}
