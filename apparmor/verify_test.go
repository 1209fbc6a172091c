package apparmor

import (
	"errors"
	"strings"
	"testing"
)

func TestVerifyOnEveryState(t *testing.T) {
	for _, tc := range []struct {
		name, want, current string
		readErr             error
		warn, errWants      string
	}{
		{"enforce", "pci-segment", "pci-segment (enforce)\n", nil, "", ""},
		{"the worker's child profile", "pci-segment//worker", "pci-segment//worker (enforce)\x00", nil, "", ""},
		{"complain", "pci-segment", "pci-segment (complain)\n", nil, "complain", ""},
		{"the worker stacked onto the loader", "pci-segment//worker", "pci-segment//&pci-segment//worker (enforce)\n", nil, "", ""},
		{"a stack in mixed mode", "pci-segment//worker", "pci-segment//&pci-segment//worker (mixed)\n", nil, "mixed", ""},
		{"a stack without it", "pci-segment//worker", "pci-segment//&other (enforce)\n", nil, "", "running under pci-segment//&other"},
		{"the loader with the worker stacked on", "pci-segment", "pci-segment//&pci-segment//worker (enforce)\n", nil, "", "running under pci-segment//&pci-segment//worker"},
		{"a stack with another profile too", "pci-segment//worker", "pci-segment//&pci-segment//worker//&other (enforce)\n", nil, "", "running under"},
		{"unconfined", "pci-segment", "unconfined\n", nil, "", "unconfined"},
		{"another profile", "pci-segment//worker", "pci-segment (enforce)\n", nil, "", "running under pci-segment,"},
		{"kill mode", "pci-segment", "pci-segment (kill)\n", nil, "", "mode kill"},
		{"missing attribute files", "pci-segment", "", errors.New("no AppArmor attribute files: AppArmor not active"), "", "not active"},
		{"malformed", "pci-segment", "pci-segment enforce", nil, "", "want \"profile (mode)\""},
	} {
		warn, err := Verify(tc.want, tc.current, tc.readErr)
		switch {
		case tc.errWants == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.errWants != "" && (err == nil || !strings.Contains(err.Error(), tc.errWants) || !errors.Is(err, ErrNotConfined) || !strings.Contains(err.Error(), "HARDENING")):
			t.Errorf("%s: %v, want an error naming %q and the guide", tc.name, err, tc.errWants)
		case (tc.warn == "") != (warn == "") || !strings.Contains(warn, tc.warn):
			t.Errorf("%s: warning %q, want %q", tc.name, warn, tc.warn)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	for _, s := range []string{"pci-segment (enforce)", "unconfined", "a//b (complain)\n", " (", "x ()"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if l, err := ParseLabel(s); err == nil && l.Profile == "" {
			t.Fatalf("ParseLabel(%q) accepted an empty profile", s)
		}
	})
}
