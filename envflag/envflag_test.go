package envflag

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBoolAcceptsDocumentedSpellings(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{"", false},
		{"0", false},
		{"false", false},
		{"FALSE", false},
		{"No", false},
		{"1", true},
		{"true", true},
		{"True", true},
		{"YES", true},
		{"yes", true},
	} {
		got, err := ParseBool("X", tc.value)
		if err != nil || got != tc.want {
			t.Errorf("ParseBool(%q) = %v, %v; want %v, nil", tc.value, got, err, tc.want)
		}
	}
}

func TestParseBoolRejectsEverythingElse(t *testing.T) {
	for _, value := range []string{" ", "2", "on", "off", "y", "n", "t", "f", " true", "true ", "yes\n", "-1"} {
		got, err := ParseBool("PCI_SEGMENT_TEST", value)
		if err == nil {
			t.Errorf("ParseBool(%q) = %v, nil; want an error", value, got)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseBool(%q) error %v does not wrap ErrInvalid", value, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "PCI_SEGMENT_TEST") || !strings.Contains(msg, "1, true, yes") {
			t.Errorf("ParseBool(%q) error %q does not name the variable and the accepted values", value, msg)
		}
	}
}

func TestBoolReadsEnvironment(t *testing.T) {
	t.Setenv("PCI_SEGMENT_ENVFLAG_TEST", "Yes")
	if got, err := Bool("PCI_SEGMENT_ENVFLAG_TEST"); err != nil || !got {
		t.Fatalf("Bool = %v, %v; want true, nil", got, err)
	}
	t.Setenv("PCI_SEGMENT_ENVFLAG_TEST", "maybe")
	if _, err := Bool("PCI_SEGMENT_ENVFLAG_TEST"); err == nil {
		t.Fatal("Bool accepted \"maybe\"")
	}
}
