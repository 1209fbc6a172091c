package selinux

import (
	"errors"
	"strings"
	"testing"
)

type fakeSource struct {
	enabled bool
	mode    int
	current string
	err     error
}

func (f fakeSource) Enabled() bool            { return f.enabled }
func (f fakeSource) Mode() int                { return f.mode }
func (f fakeSource) Current() (string, error) { return f.current, f.err }

func TestParseContext(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Context
	}{
		{"system_u:system_r:pci_segment_t:s0", Context{"system_u", "system_r", "pci_segment_t", "s0"}},
		{"system_u:system_r:pci_segment_t:s0-s0:c0.c1023\x00", Context{"system_u", "system_r", "pci_segment_t", "s0-s0:c0.c1023"}},
		{"system_u:system_r:pci_segment_t:s0:c1,c2\n", Context{"system_u", "system_r", "pci_segment_t", "s0:c1,c2"}},
		{"user_u:user_r:user_t", Context{"user_u", "user_r", "user_t", ""}},
	} {
		got, err := ParseContext(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseContext(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a:b", ":::", "a::c", "a:b:c:", "a:b:c:x9", "a:b:c:s0:", "a:b:c:s0-", "a b:r:t"} {
		if c, err := ParseContext(bad); err == nil {
			t.Errorf("ParseContext(%q) = %+v, want an error", bad, c)
		}
	}
}

func FuzzParseContext(f *testing.F) {
	for _, s := range []string{"system_u:system_r:pci_segment_t:s0", "a:b:c:s0-s0:c0.c1023", "a:b", ":::", "a:b:c:s0:c1,c2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseContext(s)
		if err == nil && (c.User == "" || c.Role == "" || c.Type == "") {
			t.Fatalf("ParseContext(%q) accepted empty fields: %+v", s, c)
		}
	})
}

func TestVerifyOnEveryState(t *testing.T) {
	const want = "pci_segment_t"
	ok := "system_u:system_r:pci_segment_t:s0"
	for _, tc := range []struct {
		name     string
		src      fakeSource
		warn     string // a substring, or "" for none
		errWants string // a substring, or "" for no error
	}{
		{"enforcing", fakeSource{true, 1, ok, nil}, "", ""},
		{"permissive", fakeSource{true, 0, ok, nil}, "permissive", ""},
		{"disabled mode", fakeSource{true, -1, ok, nil}, "", "disabled"},
		{"not active (config says enforcing, no selinuxfs)", fakeSource{false, 1, "", nil}, "", "SELinux not active"},
		{"unconfined", fakeSource{true, 1, "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", nil}, "", "unconfined"},
		{"wrong domain", fakeSource{true, 1, "system_u:system_r:init_t:s0", nil}, "", "running in init_t"},
		{"missing attribute file", fakeSource{true, 1, "", errors.New("open /proc/self/attr/current: no such file or directory")}, "", "read this process's SELinux context"},
		{"malformed context", fakeSource{true, 1, ":::", nil}, "", "malformed field"},
	} {
		warn, err := Verify(want, tc.src)
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
