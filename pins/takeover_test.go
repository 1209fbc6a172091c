package pins

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/pci-segment/pci-segment/bpf"
)

// adoptable reads only names, so plain files stand in for pins here; the
// e2e tests take over real ones.
func TestAdoptableDecidesWhatAStartDoesWithPins(t *testing.T) {
	const maps = 3
	for _, c := range []struct {
		name    string
		pins    []string // below pinDir
		replace bool
		adopt   bool
		err     string
		left    []string // pins still there afterwards
	}{
		{name: "nothing pinned", adopt: false},
		{name: "a complete set", pins: []string{"a", "b", "c"}, adopt: true, left: []string{"a", "b", "c"}},
		{name: "maps and a link", pins: []string{"a", LinkName(2, "ingress")}, adopt: true, left: []string{"a", LinkName(2, "ingress")}},
		{name: "an interrupted start", pins: []string{"a", "b"}, adopt: false, left: nil},
		{name: "another layout", pins: []string{"../v999/a"}, err: "--replace", left: []string{"../v999/a"}},
		{name: "another layout under --replace", pins: []string{"../v999/a"}, replace: true, left: []string{"../v999/a"}},
		{name: "an empty other layout", pins: []string{"../v999/"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pinDir := t.TempDir()
			ours := filepath.Join(pinDir, bpf.Layout)
			os.Mkdir(ours, 0o700)
			for _, p := range c.pins {
				p = filepath.Join(ours, p)
				os.MkdirAll(filepath.Dir(p), 0o700)
				if !strings.HasSuffix(p, "/") {
					os.WriteFile(p, nil, 0o600)
				}
			}
			adopt, err := adoptable(pinDir, c.replace, maps, hclog.NewNullLogger())
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one naming %s", err, c.err)
				}
			} else if err != nil || adopt != c.adopt {
				t.Fatalf("adoptable = %v, %v; want %v", adopt, err, c.adopt)
			}
			for _, p := range c.left {
				if _, err := os.Stat(filepath.Join(ours, p)); err != nil {
					t.Errorf("%s removed", p)
				}
			}
			if c.name == "an interrupted start" {
				if left, _ := os.ReadDir(ours); len(left) != 0 {
					t.Errorf("an interrupted start's pins left: %v", left)
				}
			}
		})
	}
}
