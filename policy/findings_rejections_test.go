package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// Rejections taken from bug reports against peer projects: each must fail
// validation with one error that names its field, says why, lists what is
// allowed where a list exists, and carries its PCI-DSS requirement.
func TestRejectionsSayWhyAndCarryTheirRequirement(t *testing.T) {
	tests := []struct {
		name  string
		rule  string // one ingress rule, in flow syntax
		field string
		req   string
		msg   string
	}{
		{
			name: "protocol in lower case", rule: "{ports: [{protocol: tcp, port: 80}]}",
			field: "spec.ingress[0].ports[0].protocol", req: "1.2.5",
			msg: `protocol "tcp" is not supported; use TCP, UDP or SCTP (exact case)`,
		},
		{
			name: "protocol ICMP", rule: "{ports: [{protocol: ICMP}]}",
			field: "spec.ingress[0].ports[0].protocol", req: "1.2.5",
			msg: `protocol "ICMP" is not supported; use TCP, UDP or SCTP (exact case): ICMP errors about allowed flows pass on their own, and other ICMP is allowed only by a rule without ports`,
		},
		{
			name: "protocol as a quoted number", rule: `{ports: [{protocol: "6", port: 80}]}`,
			field: "spec.ingress[0].ports[0].protocol", req: "1.2.5",
			msg: `protocol "6" is not supported; use TCP, UDP or SCTP (exact case)`,
		},
		{
			name: "protocol as a number", rule: "{ports: [{protocol: 6, port: 80}]}",
			field: "spec.ingress[0].ports[0].protocol", req: "1.2.5",
			msg: "protocol must be TCP, UDP or SCTP, not a number; use one of those names",
		},
		{
			name: "endPort below port", rule: "{ports: [{port: 100, endPort: 99}]}",
			field: "spec.ingress[0].ports[0].endPort", req: "1.2.5",
			msg: "endPort 99 is below port 100; endPort must be >= port",
		},
		{
			name: "endPort without port", rule: "{ports: [{endPort: 99}]}",
			field: "spec.ingress[0].ports[0].endPort", req: "1.2.5",
			msg: `endPort needs port; add "port: N" as the start of the range`,
		},
		{
			name: "port 0", rule: "{ports: [{port: 0}]}",
			field: "spec.ingress[0].ports[0].port", req: "1.2.5",
			msg: "port 0 is out of range; use 1-65535, or leave port out for every port",
		},
		{
			name: "port 65536", rule: "{ports: [{port: 65536}]}",
			field: "spec.ingress[0].ports[0].port", req: "1.2.5",
			msg: "port 65536 is out of range; use 1-65535, or leave port out for every port",
		},
		{
			name: "except wider than its cidr", rule: "{from: [{ipBlock: {cidr: 192.168.0.0/24, except: [192.168.0.0/16]}}]}",
			field: "spec.ingress[0].from[0].ipBlock.except[0]", req: "1.2.1",
			msg: `except "192.168.0.0/16" is not inside cidr "192.168.0.0/24"; an except must be a strict subset of its cidr, fix one or the other`,
		},
		{
			name: "except outside its cidr", rule: "{from: [{ipBlock: {cidr: 10.0.0.0/24, except: [192.168.0.0/24]}}]}",
			field: "spec.ingress[0].from[0].ipBlock.except[0]", req: "1.2.1",
			msg: `except "192.168.0.0/24" is not inside cidr "10.0.0.0/24"; an except must be a strict subset of its cidr`,
		},
		{
			name: "except equal to its cidr", rule: "{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}",
			field: "spec.ingress[0].from[0].ipBlock.except[0]", req: "1.2.1",
			msg: `except "10.0.0.0/8" equals its cidr, which would leave the peer empty; remove the peer instead`,
		},
		{
			name: "except of the other family", rule: `{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ["::ffff:10.1.0.0/112"]}}]}`,
			field: "spec.ingress[0].from[0].ipBlock.except[0]", req: "1.2.1",
			msg: `except "::ffff:10.1.0.0/112" is IPv6 but cidr "10.0.0.0/8" is IPv4; an except must be of its cidr's family`,
		},
		{
			name: "cidr with host bits", rule: "{from: [{ipBlock: {cidr: 192.168.1.1/24}}]}",
			field: "spec.ingress[0].from[0].ipBlock.cidr", req: "1.2.1",
			msg: `cidr "192.168.1.1/24" has host bits set; use "192.168.1.0/24"`,
		},
		{
			name: "IPv4 prefix longer than 32", rule: "{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}",
			field: "spec.ingress[0].from[0].ipBlock.cidr", req: "1.2.1",
			msg: `cidr "10.0.0.0/33" has prefix length 33, but an IPv4 address has 32 bits; use a length of 0-32`,
		},
		{
			name: "IPv6 prefix longer than 128", rule: `{from: [{ipBlock: {cidr: "2001:db8::/129"}}]}`,
			field: "spec.ingress[0].from[0].ipBlock.cidr", req: "1.2.1",
			msg: `cidr "2001:db8::/129" has prefix length 129, but an IPv6 address has 128 bits; use a length of 0-128`,
		},
		{
			name: "podSelector peer", rule: "{from: [{podSelector: {}}]}",
			field: "spec.ingress[0].from[0].podSelector", req: "1.2.1",
			msg: "podSelector peers select Kubernetes pods, which a host does not have; describe the peer by its addresses with ipBlock",
		},
		{
			name: "namespaceSelector peer", rule: "{from: [{namespaceSelector: {}}]}",
			field: "spec.ingress[0].from[0].namespaceSelector", req: "1.2.1",
			msg: "namespaceSelector peers select Kubernetes pods",
		},
		{
			name: "named port", rule: "{ports: [{port: https}]}",
			field: "spec.ingress[0].ports[0].port", req: "1.2.5",
			msg: `named port "https" is not supported`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"p.yaml": header + "  ingress:\n  - " + tt.rule + "\n"})
			path := filepath.Join(dir, "p.yaml")
			r := Validate([]string{path}, nil)
			if len(r.Errors) != 1 || r.Valid() || r.Set != nil {
				t.Fatalf("want exactly one error, got %v", Errors(r.Errors))
			}
			f := r.Errors[0]
			if f.File != path || f.Doc != 1 || f.Line != 8 || f.Field != tt.field || f.Requirement != tt.req ||
				f.Level() != LevelError || !strings.Contains(f.Err.Error(), tt.msg) {
				t.Errorf("got  %s\nwant %s:8: document 1: %s: [req %s] error: %s...", f, path, tt.field, tt.req, tt.msg)
			}
			if want := path + ":8: document 1: " + tt.field + ": [req " + tt.req + "] error: "; !strings.HasPrefix(f.Error(), want) {
				t.Errorf("text %q does not start %q", f, want)
			}
			if !saysWhatToDo(f.Err.Error()) {
				t.Errorf("message does not say what to do: %s", f.Err)
			}
		})
	}
}
