package policy

import (
	"os"
	"strings"
	"testing"
)

// The table in the package documentation is what an auditor reads; the
// checks variables are what the code does. They must say the same.
func TestChecksMatchTheDocumentedTable(t *testing.T) {
	src, err := os.ReadFile("findings_doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	inTable := false
	for _, line := range strings.Split(string(src), "\n") {
		body, isComment := strings.CutPrefix(line, "//\t")
		switch {
		case isComment && strings.HasPrefix(body, "check "):
			inTable = true
		case !isComment:
			inTable = false
		case inTable && !strings.HasPrefix(body, " "):
			rows = append(rows, strings.Fields(body))
		}
	}
	if len(rows) != len(checks) {
		t.Fatalf("documented table has %d rows, checks %d", len(rows), len(checks))
	}
	seen := make(map[string]bool)
	for i, c := range checks {
		if got := rows[i][:3]; got[0] != c.name || got[1] != c.level.String() || got[2] != c.requirement {
			t.Errorf("row %d documents %v, the code has %s %s %s", i+1, got, c.name, c.level, c.requirement)
		}
		if seen[c.name] {
			t.Errorf("check %s is listed twice", c.name)
		}
		seen[c.name] = true
	}
}

func TestSchemaFindingsBelongToTheirField(t *testing.T) {
	tests := []struct {
		field string
		want  check
	}{
		{"spec.ingress[0].ports[1].endPort", checkPort},
		{"spec.egress[3].ports", checkPort},
		{"spec.ingress[0].from[0].ipBlock.except[1]", checkPeer},
		{"spec.egress[0].to[2].podSelector", checkPeer},
		{"spec.egress[0].to", checkPeer},
		{"spec.ingress[0].portsx", checkSchema},
		{"spec.ingress", checkSchema},
		{"metadata.name", checkSchema},
		{"", checkSchema},
	}
	for _, tt := range tests {
		if got := schemaCheck(tt.field); got != tt.want {
			t.Errorf("%q: got %s, want %s", tt.field, got.name, tt.want.name)
		}
	}
}
