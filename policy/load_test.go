package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func named(name string) string { return strings.Replace(header, "name: p", "name: "+name, 1) }

// writeFiles creates files (name → content) under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadPaths(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b.yaml":        named("b"),
		"a.yml":         named("a"),
		"c.yaml":        named("c") + "---\n" + named("c2"),
		"notes.txt":     "not a policy",
		"sub/d.yaml":    named("d"),
		"[x].yaml":      named("x"),
		"other/e.yaml":  named("e"),
		"other/f.yaml":  named("f"),
		"empty/z.json":  "{}",
		"spaced/g.yaml": named("g"),
	})
	j := func(p string) string { return filepath.Join(dir, p) }
	tests := []struct {
		name  string
		paths []string
		files []string // base names, in load order
		err   string
	}{
		{"one file", []string{j("b.yaml")}, []string{"b.yaml"}, ""},
		{"directory: yaml and yml directly in it, sorted", []string{dir}, []string{"[x].yaml", "a.yml", "b.yaml", "c.yaml"}, ""},
		{"glob", []string{j("*.yaml")}, []string{"[x].yaml", "b.yaml", "c.yaml"}, ""},
		{"glob over directories", []string{j("o*")}, []string{"e.yaml", "f.yaml"}, ""},
		{"existing file with glob characters is taken literally", []string{j("[x].yaml")}, []string{"[x].yaml"}, ""},
		{"a file named twice is loaded once", []string{j("b.yaml"), dir, j("*.yaml")}, []string{"b.yaml", "[x].yaml", "a.yml", "c.yaml"}, ""},
		{"missing file", []string{j("nope.yaml")}, nil, "cannot read policy path; check it"},
		{"glob matching nothing", []string{j("*.json")}, nil, "pattern matches no file; check the path"},
		{"directory without policy files", []string{j("empty")}, nil, "holds no *.yaml or *.yml file"},
		{"bad pattern", []string{j("[.yaml")}, nil, "bad glob pattern"},
		{"empty path", []string{""}, nil, "empty path"},
		{"no path", nil, nil, "no policy path given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Load(tt.paths)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got error %v, want %q", err, tt.err)
				}
				if set != nil {
					t.Error("a failed load must return no set")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range set.Files {
				got = append(got, filepath.Base(f.Path))
			}
			if !reflect.DeepEqual(got, tt.files) {
				t.Errorf("files %v, want %v", got, tt.files)
			}
		})
	}
}

func TestLoadCollectsErrorsOfAllFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"1.yaml": named("one") + "  ingress: [{ports: [{port: http}]}]\n",
		"2.yaml": named("two") + "---\n" + named("three") + "  egress: [{to: [{ipBlock: {cidr: 10.0.0.1/8}}]}]\n",
		"3.yaml": named("ok"),
	})
	_, err := Load([]string{dir, filepath.Join(dir, "missing.yaml")})
	errs := AsErrors(err)
	var got []string
	for _, f := range errs {
		got = append(got, filepath.Base(f.File)+" "+f.Field)
	}
	want := []string{"missing.yaml ", "1.yaml spec.ingress[0].ports[0].port", "2.yaml spec.egress[0].to[0].ipBlock.cidr"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if errs[2].Doc != 2 || errs[2].Line != 14 {
		t.Errorf("second file's error at document %d line %d, want 2 and 14", errs[2].Doc, errs[2].Line)
	}
}

func TestLoadErrorsWrapTheirCause(t *testing.T) {
	_, err := Load([]string{filepath.Join(t.TempDir(), "missing.yaml")})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) is false", err)
	}
	var f *Finding
	if !errors.As(err, &f) || f.File == "" {
		t.Errorf("errors.As(%v, *Finding) gave %v", err, f)
	}
	if got := AsErrors(errors.New("plain")); len(got) != 1 || got[0].Error() != "plain" {
		t.Errorf("AsErrors(plain) = %v", got)
	}
	if got := AsErrors(nil); got != nil {
		t.Errorf("AsErrors(nil) = %v", got)
	}
}

func TestLoadWarnsAboutDuplicateNames(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml": named("web") + "---\n" + strings.Replace(named("web"), "  name: web\n", "  name: web\n  namespace: cde\n", 1),
		"b.yaml": named("web"),
	})
	set, err := Load([]string{dir})
	if err != nil {
		t.Fatalf("a duplicate name must not make the set invalid: %v", err)
	}
	var dups []*Finding
	for _, f := range set.Audit(nil) {
		if strings.Contains(f.Err.Error(), "already defined") {
			dups = append(dups, f)
		}
	}
	if len(dups) != 1 {
		t.Fatalf("want one duplicate-name warning (same name, other namespace is fine), got %v", dups)
	}
	f := dups[0]
	wantMsg := `policy "web" is already defined in ` + filepath.Join(dir, "a.yaml") + `:4 (document 1); both are enforced, ` +
		`but audit records, metrics and check will not say which of the two allowed a flow; rename one`
	if filepath.Base(f.File) != "b.yaml" || f.Line != 4 || f.Field != "metadata.name" || f.Err.Error() != wantMsg ||
		f.Level() != LevelWarning || f.Requirement != "10.2.2" {
		t.Errorf("got %s", f)
	}
}

func TestLoadSortsPoliciesByKey(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.yaml": named("z") + "---\n" + named("b") + "---\n" +
		strings.Replace(named("m"), "  name: m\n", "  name: m\n  namespace: a\n", 1)})
	set, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range set.Policies {
		keys = append(keys, p.Key())
	}
	if want := []string{"a/m", "b", "z"}; !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %v, want %v", keys, want)
	}
}

func TestLoadWarnsAboutFileWithoutPolicy(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.yaml": named("a"), "b.yaml": "# placeholder\n"})
	set, err := Load([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Warnings) != 1 || filepath.Base(set.Warnings[0].File) != "b.yaml" || !set.Warnings[0].Warning {
		t.Errorf("warnings %v", set.Warnings)
	}
}

func TestLoadRejectsOversizedFile(t *testing.T) {
	dir := writeFiles(t, map[string]string{"big.yaml": "#" + strings.Repeat("x", MaxFileSize) + "\n"})
	_, err := Load([]string{dir})
	if err == nil || !strings.Contains(err.Error(), "split it into several files") {
		t.Errorf("got %v", err)
	}
}

func TestSetHash(t *testing.T) {
	a, b := named("a"), named("b")
	load := func(files map[string]string, paths ...string) *Set {
		dir := writeFiles(t, files)
		for i := range paths {
			paths[i] = filepath.Join(dir, paths[i])
		}
		if len(paths) == 0 {
			paths = []string{dir}
		}
		set, err := Load(paths)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	base := load(map[string]string{"a.yaml": a, "b.yaml": b})

	// The documented reproduction: sha256sum-style lines sorted by name.
	line := func(name, content string) string {
		s := sha256.Sum256([]byte(content))
		return hex.EncodeToString(s[:]) + "  " + name + "\n"
	}
	if want := sha256.Sum256([]byte(line("a.yaml", a) + line("b.yaml", b))); base.Hash != want {
		t.Errorf("hash %s, want %s", base.HashHex(), hex.EncodeToString(want[:]))
	}
	if f := base.Files[0]; f.SHA256 != sha256.Sum256([]byte(a)) || f.Policies != 1 {
		t.Errorf("file record %+v", f)
	}
	if got := load(map[string]string{"a.yaml": a, "b.yaml": b}, "b.yaml", "a.yaml"); got.Hash != base.Hash {
		t.Error("hash depends on the order the files were named in")
	}
	if got := load(map[string]string{"x/a.yaml": a, "y/b.yaml": b}, "x/a.yaml", "y/b.yaml"); got.Hash != base.Hash {
		t.Error("hash depends on where the files sit")
	}
	if got := load(map[string]string{"a.yaml": a, "b.yaml": b + "# changed\n"}); got.Hash == base.Hash {
		t.Error("hash ignores content")
	}
	if got := load(map[string]string{"a.yaml": a, "c.yaml": b}); got.Hash == base.Hash {
		t.Error("hash ignores names")
	}
}
