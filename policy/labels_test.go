package policy

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseLabels(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
		err  string
	}{
		{"", nil, ""},
		{"pci-env=cde", map[string]string{"pci-env": "cde"}, ""},
		{"pci-env=cde,tier=db", map[string]string{"pci-env": "cde", "tier": "db"}, ""},
		{"example.com/role=web", map[string]string{"example.com/role": "web"}, ""},
		{"flag=", map[string]string{"flag": ""}, ""},
		{"v=1.2_x-Y", map[string]string{"v": "1.2_x-Y"}, ""},
		{"a=b,", nil, "label 2 is empty"},
		{",a=b", nil, "label 1 is empty"},
		{"a", nil, `label "a" has no '='; write it as key=value`},
		{"a=b,a=c", nil, `label key "a" is given twice`},
		{"a=b, c=d", nil, `key " c" is not a valid label key`},
		{"a=b c", nil, `value "b c" is not a valid label value`},
		{"a=b=c", nil, `value "b=c" is not a valid label value`},
		{"=b", nil, `key "" is not a valid label key`},
		{"-a=b", nil, `key "-a" is not a valid label key`},
		{"Bad_Prefix/a=b", nil, `key prefix "Bad_Prefix" is not a DNS subdomain`},
		{"/a=b", nil, `key prefix "" is not a DNS subdomain`},
		{"a=" + strings.Repeat("x", 64), nil, "is not a valid label value"},
	}
	for _, tt := range tests {
		got, err := ParseLabels(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%q: unexpected error %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
		case !reflect.DeepEqual(got, tt.want):
			t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFormatLabelsRoundTrips(t *testing.T) {
	in := "tier=db,pci-env=cde,empty="
	m, err := ParseLabels(in)
	if err != nil {
		t.Fatal(err)
	}
	out := FormatLabels(m)
	if out != "empty=,pci-env=cde,tier=db" {
		t.Errorf("got %q", out)
	}
	if back, _ := ParseLabels(out); !reflect.DeepEqual(back, m) {
		t.Errorf("round trip changed %v to %v", m, back)
	}
}
