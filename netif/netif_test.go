package netif

import (
	"strings"
	"testing"
)

func TestResolveLoopbackByNameAndGlob(t *testing.T) {
	for _, names := range [][]string{{"lo"}, {"l?"}, {"lo", "l*"}} {
		got, err := Resolve(names)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", names, err)
		}
		if len(got) != 1 || got[0].Name != "lo" || got[0].Index < 1 {
			t.Errorf("Resolve(%q) = %+v, want lo once", names, got)
		}
	}
}

func TestResolveNamesWhatIsThere(t *testing.T) {
	_, err := Resolve([]string{"pcs-no-such0"})
	if err == nil || !strings.Contains(err.Error(), "available: ") || !strings.Contains(err.Error(), "lo") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Resolve([]string{"pcs-none*"}); err == nil || !strings.Contains(err.Error(), "matches no interface") {
		t.Fatalf("glob err = %v", err)
	}
}
