package policy

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped examples are documentation: every valid one must load
// without a finding, and every invalid one must fail for the one reason its
// comment gives, with the line, field and requirement a user would be
// pointed to.

func TestExamplePoliciesValidate(t *testing.T) {
	files, err := filepath.Glob("../examples/policies/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies found: %v", err)
	}
	for _, f := range files {
		r := Validate([]string{f}, nil)
		if !r.Valid() || len(r.Warnings) > 0 {
			t.Errorf("%s: errors %v, warnings %v", f, r.Errors, r.Warnings)
		}
	}
	// On the hosts they are written for, no direction is left open.
	for _, labels := range []string{"pci-env=cde,role=web", "pci-env=cde,tier=db", "pci-env=cde,role=checkout"} {
		var out bytes.Buffer
		if code := RunValidate(&out, []string{"../examples/policies"}, labels, "text"); code != ExitValid || !strings.Contains(out.String(), " 0 warnings") {
			t.Errorf("labels %s: exit %d, output:\n%s", labels, code, out.String())
		}
	}
}

func TestInvalidExamplesFailWithTheirMistake(t *testing.T) {
	tests := []struct {
		file  string
		line  int
		field string
		req   string
		msg   string
	}{
		{"unknown-field.yaml", 15, "spec.ingress[0].from[0].ipBlock.excepts", "1.2.1", `unknown field; did you mean "except"?`},
		{"host-bits.yaml", 14, "spec.ingress[0].from[0].ipBlock.cidr", "1.2.1", `cidr "10.0.0.1/8" has host bits set; use "10.0.0.0/8"`},
		{"prefix-too-long.yaml", 14, "spec.ingress[0].from[0].ipBlock.cidr", "1.2.1", `cidr "10.0.0.0/33" has prefix length 33, but an IPv4 address has 32 bits; use a length of 0-32`},
		{"except-outside.yaml", 16, "spec.ingress[0].from[0].ipBlock.except[0]", "1.2.1", `except "192.168.1.0/24" is not inside cidr "10.0.0.0/8"`},
		{"except-equals-cidr.yaml", 16, "spec.ingress[0].from[0].ipBlock.except[0]", "1.2.1", `except "10.0.0.0/8" equals its cidr`},
		{"except-family.yaml", 16, "spec.ingress[0].from[0].ipBlock.except[0]", "1.2.1", `except "::ffff:10.1.0.0/112" is IPv6 but cidr "10.0.0.0/8" is IPv4`},
		{"named-port.yaml", 14, "spec.ingress[0].ports[0].port", "1.2.5", `named port "https" is not supported`},
		{"port-out-of-range.yaml", 14, "spec.ingress[0].ports[0].port", "1.2.5", "port 65536 is out of range; use 1-65535"},
		{"bad-protocol.yaml", 13, "spec.ingress[0].ports[0].protocol", "1.2.5", `protocol "tcp" is not supported; use TCP, UDP or SCTP`},
		{"protocol-number.yaml", 13, "spec.ingress[0].ports[0].protocol", "1.2.5", `protocol "6" is not supported; use TCP, UDP or SCTP`},
		{"pod-selector-peer.yaml", 13, "spec.ingress[0].from[0].podSelector", "1.2.1", "a host does not have; describe the peer by its addresses with ipBlock"},
		{"endport-below-port.yaml", 15, "spec.ingress[0].ports[0].endPort", "1.2.5", "endPort 8080 is below port 8443; endPort must be >= port"},
		{"endport-without-port.yaml", 14, "spec.ingress[0].ports[0].endPort", "1.2.5", `endPort needs port; add "port: N"`},
		{"wrong-apiversion.yaml", 2, "apiVersion", "1.2.1", `"networking.k8s.io/v1" is not supported; use "pci-segment/v1"`},
		{"ignored-egress.yaml", 15, "spec.egress", "1.2.1", "egress rules have no effect because policyTypes does not list Egress"},
		{"cde-open-ingress.yaml", 16, "spec.ingress[0].from", "1.3.1", "CDE ingress admits every IPv4 address on every port of every protocol through these peers"},
		{"cde-nearly-open-ingress.yaml", 18, "spec.ingress[0].from", "1.3.1", "CDE ingress admits every public IPv4 address on every port of every protocol through these peers"},
	}
	files, _ := filepath.Glob("../examples/invalid/*.yaml")
	if len(files) != len(tests) {
		t.Errorf("examples/invalid holds %d files, the table %d: keep them in step", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("../examples/invalid", tt.file)
			r := Validate([]string{path}, nil)
			if len(r.Errors) != 1 {
				t.Fatalf("want exactly one error, got %d: %v", len(r.Errors), Errors(r.Errors))
			}
			f := r.Errors[0]
			if f.File != path || f.Doc < 1 || f.Line != tt.line || f.Field != tt.field || f.Requirement != tt.req || !strings.Contains(f.Err.Error(), tt.msg) {
				t.Errorf("got  %s\nwant %s:%d: document N: %s: [req %s] error: ...%s...", f, path, tt.line, tt.field, tt.req, tt.msg)
			}
		})
	}
}
