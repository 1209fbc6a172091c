package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxFileSize bounds one policy file. 100,000 prefixes take about 4 MiB of
// YAML; the bound keeps a stray large file from exhausting the worker.
const MaxFileSize = 16 << 20

// Set is a loaded, valid policy set.
type Set struct {
	// Files in load order: the paths as given, directories expanded and
	// globs matched in sorted order, each file once.
	Files []File
	// Policies sorted by Key; keys are unique.
	Policies []*Policy
	// Hash identifies the set: the SHA-256 of sha256sum-style lines
	// ("<hex sha256>  <base name>\n") of its files sorted by base name (then
	// hash). Base names keep it independent of where the files sit, so
	// for a single directory an auditor reproduces it with
	// `cd DIR && LC_ALL=C sha256sum *.yaml | sha256sum` (given only .yaml
	// files there).
	Hash [sha256.Size]byte
	// Warnings found while loading, e.g. a file with no policy in it.
	Warnings []*Finding
}

// File is one loaded policy file.
type File struct {
	Path   string
	SHA256 [sha256.Size]byte
	// Policies counts the policy documents in the file.
	Policies int
}

// HashHex is Hash in lowercase hex, as logs and reports print it.
func (s *Set) HashHex() string { return hex.EncodeToString(s.Hash[:]) }

// Load reads a policy set. Each path is a file, a directory (every *.yaml
// and *.yml file directly in it, sorted), or a glob pattern. Globs are
// expanded here because systemd passes ExecStart arguments unexpanded. A
// path or pattern matching no file is an error.
//
// Every problem in every file is collected: the error is an Errors. On
// error the set is nil, so a caller cannot enforce part of a set.
func Load(paths []string) (*Set, error) {
	set, errs := load(paths)
	if len(errs) > 0 {
		return nil, Errors(errs)
	}
	return set, nil
}

func load(paths []string) (*Set, []*Finding) {
	var errs []*Finding
	if len(paths) == 0 {
		return nil, []*Finding{{Err: errors.New("no policy path given; name a file, directory or glob")}}
	}
	files, ferrs := expand(paths)
	errs = append(errs, ferrs...)

	set := &Set{}
	for _, name := range files {
		data, err := readFile(name)
		if err != nil {
			errs = append(errs, &Finding{File: name, Err: err})
			continue
		}
		pols, perrs, docs := parse(name, data)
		errs = append(errs, perrs...)
		if docs == 0 && len(perrs) == 0 {
			set.Warnings = append(set.Warnings, &Finding{File: name, Warning: true,
				Err: errors.New("holds no policy document; remove it or add a policy")})
		}
		set.Files = append(set.Files, File{Path: name, SHA256: sha256.Sum256(data), Policies: len(pols)})
		set.Policies = append(set.Policies, pols...)
	}
	slices.SortStableFunc(set.Policies, func(a, b *Policy) int { return strings.Compare(a.Key(), b.Key()) })
	set.Hash = setHash(set.Files)
	return set, errs
}

func setHash(files []File) [sha256.Size]byte {
	lines := make([]string, len(files))
	for i, f := range files {
		lines[i] = hex.EncodeToString(f.SHA256[:]) + "  " + filepath.Base(f.Path) + "\n"
	}
	slices.SortFunc(lines, func(a, b string) int {
		// sort by name, then by hash: the name starts after 64 hex digits
		// and two spaces.
		if c := strings.Compare(a[66:], b[66:]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	h := sha256.New()
	for _, l := range lines {
		io.WriteString(h, l)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// expand turns paths into a list of files, each once.
func expand(paths []string) ([]string, []*Finding) {
	var (
		out  []string
		errs []*Finding
		seen = make(map[string]bool)
	)
	add := func(name string) {
		key := name
		if abs, err := filepath.Abs(name); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, name)
		}
	}
	for _, p := range paths {
		files, err := expandOne(p)
		if err != nil {
			errs = append(errs, &Finding{File: p, Err: err})
			continue
		}
		for _, f := range files {
			add(f)
		}
	}
	return out, errs
}

func expandOne(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("empty path; name a file, directory or glob")
	}
	st, err := os.Stat(p)
	switch {
	case err == nil && st.IsDir():
		return readDir(p)
	case err == nil:
		return []string{p}, nil
	case !errors.Is(err, fs.ErrNotExist) || !hasMeta(p):
		return nil, fmt.Errorf("cannot read policy path; check it: %w", err)
	}
	matches, err := filepath.Glob(p)
	if err != nil {
		return nil, fmt.Errorf("bad glob pattern; fix its brackets: %w", err)
	}
	if len(matches) == 0 {
		return nil, errors.New("pattern matches no file; check the path")
	}
	var out []string
	for _, m := range matches { // Glob returns them sorted
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			files, err := readDir(m)
			if err != nil {
				return nil, err
			}
			out = append(out, files...)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

func hasMeta(p string) bool { return strings.ContainsAny(p, `*?[\`) }

// readDir lists the policy files directly in dir, sorted. Subdirectories
// are not entered, so a backup or staging directory inside is not loaded
// by accident.
func readDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, fmt.Errorf("cannot list directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue
		}
		full := filepath.Join(dir, name)
		if st, err := os.Stat(full); err != nil || !st.Mode().IsRegular() {
			continue
		}
		out = append(out, full)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("directory %s holds no *.yaml or *.yml file; check the path", dir)
	}
	return out, nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot open policy file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file; name a policy file")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is larger than %d MiB; split it into several files", MaxFileSize>>20)
	}
	return data, nil
}
