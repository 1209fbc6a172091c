package policy

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// The shipped examples are documentation: every valid one must load
// without a finding, and every invalid one must fail for the one reason its
// comment gives, with the line and field a user would be pointed to.

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
	for _, labels := range []string{"pci-env=cde,role=web", "pci-env=cde,tier=db"} {
		var out bytes.Buffer
		if code := RunValidate(&out, []string{"../examples/policies"}, labels); code != ExitValid || !strings.Contains(out.String(), " 0 warnings") {
			t.Errorf("labels %s: exit %d, output:\n%s", labels, code, out.String())
		}
	}
}

func TestInvalidExamplesFailWithTheirMistake(t *testing.T) {
	tests := []struct {
		file  string
		line  int
		field string
		msg   string
	}{
		{"unknown-field.yaml", 15, "spec.ingress[0].from[0].ipBlock.excepts", `unknown field; did you mean "except"?`},
		{"host-bits.yaml", 14, "spec.ingress[0].from[0].ipBlock.cidr", `cidr "10.0.0.1/8" has host bits set; use "10.0.0.0/8"`},
		{"except-outside.yaml", 16, "spec.ingress[0].from[0].ipBlock.except[0]", `except "192.168.1.0/24" is not inside cidr "10.0.0.0/8"`},
		{"except-family.yaml", 16, "spec.ingress[0].from[0].ipBlock.except[0]", `except "::ffff:10.1.0.0/112" is IPv6 but cidr "10.0.0.0/8" is IPv4`},
		{"named-port.yaml", 14, "spec.ingress[0].ports[0].port", `named port "https" is not supported`},
		{"bad-protocol.yaml", 13, "spec.ingress[0].ports[0].protocol", `protocol "tcp" is not supported; use TCP, UDP or SCTP`},
		{"pod-selector-peer.yaml", 13, "spec.ingress[0].from[0].podSelector", "a host does not have; describe the peer by its addresses with ipBlock"},
		{"endport-below-port.yaml", 15, "spec.ingress[0].ports[0].endPort", "endPort 8080 is below port 8443; endPort must be >= port"},
		{"wrong-apiversion.yaml", 2, "apiVersion", `"networking.k8s.io/v1" is not supported; use "pci-segment/v1"`},
		{"ignored-egress.yaml", 15, "spec.egress", "egress rules have no effect because policyTypes does not list Egress"},
		{"duplicate-name.yaml", 12, "metadata.name", `policy "same" is already defined in`},
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
			if f.File != path || f.Doc < 1 || f.Line != tt.line || f.Field != tt.field || !strings.Contains(f.Err.Error(), tt.msg) {
				t.Errorf("got  %s\nwant %s:%d: document N: %s: ...%s...", f, path, tt.line, tt.field, tt.msg)
			}
		})
	}
}
