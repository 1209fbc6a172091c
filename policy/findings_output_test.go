package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// outputWeb is a small CDE policy with something for several checks.
const outputWeb = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {pci-env: cde}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{ipBlock: {cidr: 0.0.0.0/0}}]
    ports: [{port: 443}, {port: 23}]
`

const outputBad = `apiVersion: pci-segment/v1
kind: NetworkPolicy
metadata:
  name: bad
spec:
  podSelector: {}
  ingress:
  - ports: [{protocol: tcp, port: 443}]
`

var (
	msgAnnotation = `CDE policy has no pci-dss annotation; add one naming the requirement it implements, ` +
		`e.g. pci-dss/requirement: "1.3.1", so the scope documentation can cite this segmentation control`
	msgSSH = "on a host labelled pci-env=cde ingress is governed and no rule admits TCP 22 from any address: " +
		"remote administration over SSH would be cut; add a rule admitting TCP 22 from the management network " +
		"or jump host, or ignore this if the host is administered another way"
	// Without --labels naming it, the host the selector names is judged.
	msgSSHInferred = strings.Replace(msgSSH, "labelled pci-env=cde", "labelled only pci-env=cde", 1)
	msgPublic      = "CDE ingress admits every IPv4 address on TCP 23, 443 through these peers, as a public service would; " +
		"if that is intended, record why in a pci-segment/justification annotation, otherwise list only the peers " +
		"that need to reach the CDE, on the ports they need"
	msgTelnet = "TCP 23 admits telnet (TCP 23), an insecure cleartext service; use SSH instead, " +
		"or record the measures that secure it in a pci-segment/justification annotation"
	msgProtocol = `protocol "tcp" is not supported; use TCP, UDP or SCTP (exact case)`
)

func TestRunValidateTextIsOneLinePerFinding(t *testing.T) {
	dir := writeFiles(t, map[string]string{"web.yaml": outputWeb})
	web := filepath.Join(dir, "web.yaml")
	set, err := Load([]string{web})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := RunValidate(&out, []string{web}, "pci-env=cde", "text"); code != ExitValid {
		t.Errorf("exit %d, want %d", code, ExitValid)
	}
	want := []string{
		web + ":3: document 1: metadata.annotations: [req 12.5.2] warning: " + msgAnnotation,
		web + ":9: document 1: spec.ingress: [req 1.2.5] warning: " + msgSSH,
		web + ":10: document 1: spec.ingress[0].from: [req 1.4.2] warning: " + msgPublic,
		web + ":11: document 1: spec.ingress[0].ports[1]: [req 1.2.6] warning: " + msgTelnet,
		"valid: 1 file, 1 policy, 4 warnings, set sha256 " + set.HashHex(),
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestRunValidateJSONRoundTripsAndMatches(t *testing.T) {
	dir := writeFiles(t, map[string]string{"web.yaml": outputWeb, "bad.yaml": outputBad})
	web, bad := filepath.Join(dir, "web.yaml"), filepath.Join(dir, "bad.yaml")
	set, err := Load([]string{web})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		file       string
		line, doc  int
		field      string
		level, req string
		message    string
	}
	sum := func(content string) string { s := sha256.Sum256([]byte(content)); return hex.EncodeToString(s[:]) }
	tests := []struct {
		name     string
		paths    []string
		labels   string
		code     int
		valid    bool
		errors   []row
		warnings []row
		files    []ReportedFile
		setHash  string
	}{
		{
			name: "valid, with warnings", paths: []string{web}, code: ExitValid, valid: true,
			warnings: []row{
				{web, 3, 1, "metadata.annotations", "warning", "12.5.2", msgAnnotation},
				{web, 9, 1, "spec.ingress", "warning", "1.2.5", msgSSHInferred},
				{web, 10, 1, "spec.ingress[0].from", "warning", "1.4.2", msgPublic},
				{web, 11, 1, "spec.ingress[0].ports[1]", "warning", "1.2.6", msgTelnet},
			},
			files:   []ReportedFile{{web, sum(outputWeb)}},
			setHash: set.HashHex(),
		},
		{
			name: "a host-level finding has no file", paths: []string{web}, labels: "pci-env=cde,role=web", code: ExitValid, valid: true,
			warnings: []row{
				{web, 3, 1, "metadata.annotations", "warning", "12.5.2", msgAnnotation},
				{web, 9, 1, "spec.ingress", "warning", "1.2.5", strings.Replace(msgSSH, "pci-env=cde", "pci-env=cde,role=web", 1)},
				{web, 10, 1, "spec.ingress[0].from", "warning", "1.4.2", msgPublic},
				{web, 11, 1, "spec.ingress[0].ports[1]", "warning", "1.2.6", msgTelnet},
			},
			files:   []ReportedFile{{web, sum(outputWeb)}},
			setHash: set.HashHex(),
		},
		{
			name: "invalid: files listed, no set hash", paths: []string{bad, web}, code: ExitInvalid,
			errors: []row{{bad, 8, 1, "spec.ingress[0].ports[0].protocol", "error", "1.2.5", msgProtocol}},
			files:  []ReportedFile{{bad, sum(outputBad)}, {web, sum(outputWeb)}},
		},
		{
			name: "no policy selects the host", paths: []string{web}, labels: "role=web", code: ExitValid, valid: true,
			warnings: []row{
				{web, 3, 1, "metadata.annotations", "warning", "12.5.2", msgAnnotation},
				{web, 9, 1, "spec.ingress", "warning", "1.2.5", msgSSHInferred},
				{web, 10, 1, "spec.ingress[0].from", "warning", "1.4.2", msgPublic},
				{web, 11, 1, "spec.ingress[0].ports[1]", "warning", "1.2.6", msgTelnet},
				{"", 0, 0, "labels role=web", "warning", "1.2.1", "no policy selects these labels, so such a host filters nothing; " +
					"add a policy whose podSelector.matchLabels is a subset of them"},
			},
			files:   []ReportedFile{{web, sum(outputWeb)}},
			setHash: set.HashHex(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := RunValidate(&out, tt.paths, tt.labels, "json"); code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			// The keys are exactly the documented ones.
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
				t.Fatalf("output is not a JSON object: %v\n%s", err, out.String())
			}
			if keys, want := slices.Sorted(maps.Keys(raw)), []string{"errors", "files", "set_sha256", "valid", "warnings"}; !slices.Equal(keys, want) {
				t.Errorf("keys %v, want %v", keys, want)
			}
			var rep ValidationReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			rows := func(fs []*Finding) []row {
				out := []row{}
				for _, f := range fs {
					out = append(out, row{f.File, f.Line, f.Doc, f.Field, f.Level().String(), f.Requirement, f.Err.Error()})
				}
				return out
			}
			if rep.Valid != tt.valid || rep.SetSHA256 != tt.setHash || !reflect.DeepEqual(rep.Files, tt.files) {
				t.Errorf("valid %v, set %q, files %v; want %v, %q, %v", rep.Valid, rep.SetSHA256, rep.Files, tt.valid, tt.setHash, tt.files)
			}
			for _, c := range []struct {
				what      string
				got, want []row
			}{{"errors", rows(rep.Errors), tt.errors}, {"warnings", rows(rep.Warnings), tt.warnings}} {
				if c.want == nil {
					c.want = []row{}
				}
				if !reflect.DeepEqual(c.got, c.want) {
					t.Errorf("%s:\n got %+v\nwant %+v", c.what, c.got, c.want)
				}
			}
			// Round trip: what was read writes back to the same bytes.
			var again bytes.Buffer
			enc := json.NewEncoder(&again)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				t.Fatal(err)
			}
			if again.String() != out.String() {
				t.Errorf("round trip changed the document:\n%s\nwas\n%s", again.String(), out.String())
			}
		})
	}
}

func TestFindingJSONRefusesAnUnknownLevel(t *testing.T) {
	var f Finding
	if err := json.Unmarshal([]byte(`{"level": "fatal", "message": "x"}`), &f); err == nil || !strings.Contains(err.Error(), `"fatal"`) {
		t.Errorf("got %v, want an error naming the level", err)
	}
	if err := json.Unmarshal([]byte(`{"level": "warning", "requirement": "1.2.6", "message": "x"}`), &f); err != nil ||
		!f.Warning || f.Requirement != "1.2.6" || f.Err.Error() != "x" {
		t.Errorf("got %+v, %v", f, err)
	}
}
