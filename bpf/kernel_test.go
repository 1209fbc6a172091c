package bpf

import (
	"strings"
	"testing"
)

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		in           string
		major, minor int
		bad          bool
	}{
		{"6.18.44-fc-v1252", 6, 18, false},
		{"6.6.0", 6, 6, false},
		{"6.1.0-27-amd64", 6, 1, false},
		{"5.15", 5, 15, false},
		{"6.10rc1", 6, 10, false},
		{"6", 0, 0, true},
		{"x.y", 0, 0, true},
	} {
		major, minor, err := parseRelease(tc.in)
		if tc.bad != (err != nil) || major != tc.major || minor != tc.minor {
			t.Errorf("parseRelease(%q) = %d, %d, %v", tc.in, major, minor, err)
		}
	}
}

func TestOldKernelIsRefusedNamingBothVersions(t *testing.T) {
	err := checkRelease("6.1.0-27-amd64")
	if err == nil || !strings.Contains(err.Error(), "6.1.0-27-amd64") || !strings.Contains(err.Error(), "6.6") {
		t.Fatalf("checkRelease(6.1) = %v", err)
	}
	for _, ok := range []string{"6.6.0", "6.18.44-fc-v1252", "7.0"} {
		if err := checkRelease(ok); err != nil {
			t.Errorf("checkRelease(%s) = %v", ok, err)
		}
	}
}
