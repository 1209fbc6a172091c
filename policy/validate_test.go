package policy

import (
	"bytes"
	"cmp"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestHostWarnings(t *testing.T) {
	// Annotated and admitting SSH, so the host warnings are all there is.
	ingressOnly := strings.Replace(named("in"), "podSelector: {}", "podSelector: {matchLabels: {pci-env: cde}}", 1) +
		"  policyTypes: [Ingress]\n  ingress: [{from: [{ipBlock: {cidr: 10.99.0.10/32}}], ports: [{port: 22}]}]\n"
	ingressOnly = strings.Replace(ingressOnly, "  name: in\n", "  name: in\n  annotations: {pci-dss/requirement: \"1.3.1\"}\n", 1)
	egressForDB := strings.Replace(named("out"), "podSelector: {}", "podSelector: {matchLabels: {tier: db}}", 1) + "  policyTypes: [Egress]\n"
	egressForDB = strings.Replace(egressForDB, "  name: out\n", "  name: out\n  annotations: {pci-dss/requirement: \"1.3.2\"}\n", 1)
	dir := writeFiles(t, map[string]string{"a.yaml": ingressOnly + "---\n" + egressForDB})
	type warning struct{ field, req, msg string } // msg is a substring
	// Policy "in" names a CDE host, labelled only pci-env=cde, whose egress
	// nothing governs: the audit says so at its selector, host or no host.
	inferred := warning{"spec.podSelector", "1.3.2", "egress of a host labelled only pci-env=cde, which this selector selects, " +
		"is governed by no applying policy and is not filtered (PCI-DSS Req 1.3.2)"}
	noPolicy := func(labels string) warning {
		return warning{"labels " + labels, "1.2.1", "no policy selects these labels"}
	}
	tests := []struct {
		labels string
		want   []warning // in order
	}{
		{"", []warning{inferred}}, // no labels given: no host is assumed
		// The named host's egress is governed by "out"; the inferred host's
		// is still not.
		{"pci-env=cde,tier=db", []warning{inferred}},
		// One gap, one finding: the host named and the host "in" names
		// lack the same egress policy.
		{"pci-env=cde,role=web", []warning{{"labels pci-env=cde,role=web", "1.3.2",
			"egress of this CDE host is governed by no applying policy and is not filtered (PCI-DSS Req 1.3.2)"}}},
		{"tier=db", []warning{inferred}}, // not a CDE host: an ungoverned direction is its owner's choice
		{"role=web", []warning{inferred, noPolicy("role=web")}},
		{"pci-env=dev", []warning{inferred, noPolicy("pci-env=dev")}},
		{"pci-env=cdex", []warning{inferred, noPolicy("pci-env=cdex")}},
	}
	for _, tt := range tests {
		labels, err := ParseLabels(tt.labels)
		if err != nil {
			t.Fatal(err)
		}
		r := Validate([]string{dir}, labels)
		if !r.Valid() || r.ExitCode() != ExitValid {
			t.Fatalf("%s: invalid: %v", tt.labels, r.Errors)
		}
		if len(r.Warnings) != len(tt.want) {
			t.Errorf("labels %q: got %d warnings %v, want %d", tt.labels, len(r.Warnings), Errors(r.Warnings), len(tt.want))
			continue
		}
		for i, w := range r.Warnings {
			if want := tt.want[i]; !w.Warning || !strings.Contains(w.Err.Error(), want.msg) || w.Field != want.field || w.Requirement != want.req {
				t.Errorf("labels %q: warning %q, want %s: [req %s] ...%s...", tt.labels, w, want.field, want.req, want.msg)
			}
		}
	}

	// HostWarnings on a loaded set, and on a set with no policy at all.
	set, _ := Load([]string{dir})
	w := set.HostWarnings(map[string]string{"pci-env": "cde", "x": "y"})
	if len(w) != 1 || !strings.Contains(w[0].Error(), "egress") {
		t.Errorf("got %v", Errors(w))
	}
	empty := &Set{}
	w = empty.HostWarnings(map[string]string{"pci-env": "cde"})
	if len(w) != 3 || !strings.Contains(w[1].Error(), "Req 1.3.1") || !strings.Contains(w[2].Error(), "Req 1.3.2") {
		t.Errorf("got %v", Errors(w))
	}
}

func TestRunValidate(t *testing.T) {
	good := strings.Replace(named("web"), "podSelector: {}", "podSelector: {matchLabels: {pci-env: cde}}", 1) +
		"  policyTypes: [Ingress, Egress]\n  ingress: [{from: [{ipBlock: {cidr: 10.99.0.10/32}}], ports: [{port: 22}]}]\n"
	good = strings.Replace(good, "  name: web\n", "  name: web\n  annotations: {pci-dss/requirement: \"1.3.1\"}\n", 1)
	dir := writeFiles(t, map[string]string{
		"good.yaml": good,
		"bad.yaml":  named("bad") + "  ingress: [{from: [{ipBlock: {cidr: 10.0.0.1/8}}]}]\n",
	})
	goodPath, badPath := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	tests := []struct {
		name   string
		paths  []string
		labels string
		format string // "" is text; "-" is the empty string
		code   int
		lines  []string // regexps, one per output line
	}{
		{
			name: "valid", paths: []string{goodPath}, code: ExitValid,
			lines: []string{`^valid: 1 file, 1 policy, 0 warnings, set sha256 [0-9a-f]{64}$`},
		},
		{
			name: "valid with a warning still exits 0", paths: []string{goodPath}, labels: "role=web", code: ExitValid,
			lines: []string{
				`^labels role=web: \[req 1\.2\.1\] warning: no policy selects these labels`,
				`^valid: 1 file, 1 policy, 1 warning, set sha256 `,
			},
		},
		{
			name: "invalid: one line per finding", paths: []string{dir, filepath.Join(dir, "none*.yaml")}, code: ExitInvalid,
			lines: []string{
				`^` + regexp.QuoteMeta(filepath.Join(dir, "none*.yaml")) + `: \[req 1\.2\.1\] error: pattern matches no file; check the path$`,
				`^` + regexp.QuoteMeta(badPath) + `:7: document 1: spec\.ingress\[0\]\.from\[0\]\.ipBlock\.cidr: \[req 1\.2\.1\] error: cidr "10\.0\.0\.1/8" has host bits set; use "10\.0\.0\.0/8"$`,
				`^invalid: 2 errors, 0 warnings$`,
			},
		},
		{
			name: "malformed labels are a usage error", paths: []string{goodPath}, labels: "pci-env", code: ExitUsage,
			lines: []string{`^validate: --labels: label "pci-env" has no '='`},
		},
		{
			name: "no path is a usage error", code: ExitUsage,
			lines: []string{`^validate: no policy path given`},
		},
		{
			name: "an unknown output format is a usage error", paths: []string{goodPath}, format: "yaml", code: ExitUsage,
			lines: []string{`^validate: output format "yaml" is not supported; use text or json$`},
		},
		{
			name: "no output format is a usage error too", paths: []string{goodPath}, format: "-", code: ExitUsage,
			lines: []string{`^validate: output format "" is not supported; use text or json$`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			format := cmp.Or(tt.format, "text")
			if format == "-" {
				format = ""
			}
			code := RunValidate(&out, tt.paths, tt.labels, format)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != len(tt.lines) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(tt.lines), out.String())
			}
			for i, re := range tt.lines {
				if !regexp.MustCompile(re).MatchString(lines[i]) {
					t.Errorf("line %d:\n got %s\nwant %s", i+1, lines[i], re)
				}
			}
		})
	}
}
