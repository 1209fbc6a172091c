package audit

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Retention, as PCI-DSS Requirement 10.5.1 asks: a year of audit history,
// the last three months of it at hand (uncompressed).
const (
	KeepUncompressed = 90 * 24 * time.Hour
	Keep             = 366 * 24 * time.Hour
	// RotateEvery starts a new file at least this often.
	RotateEvery = 24 * time.Hour
)

// rotatedPrefix and the time stamp name a rotated file, so that names sort
// in the order the files were written.
const rotatedPrefix = "audit-"

// Rotate starts a new live file now (SIGUSR1 in the worker, or a size or
// age limit), carrying the chain over: the new file's first record names
// the old one.
func (w *Writer) Rotate() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rotate()
}

func (w *Writer) rotate() error {
	if err := w.flush(true); err != nil {
		return err
	}
	name := rotatedPrefix + time.Now().UTC().Format("20060102T150405.000000000Z") + ".log"
	live := filepath.Join(w.dir, FileName)
	if err := os.Rename(live, filepath.Join(w.dir, name)); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	if err := w.openFile(); err != nil {
		return err
	}
	// One retention pass at a time: two would compress the same file.
	if w.retaining.CompareAndSwap(false, true) {
		go func() {
			defer w.retaining.Store(false)
			retain(w.dir, time.Now())
		}()
	}
	return w.append(Record{Type: TypeRotated, Outcome: "success", Who: "pci-segment worker", Resource: FileName,
		Details: map[string]any{"chain": w.chain, "previous_file": name, "previous_last_seq": w.seq}})
}

// Files lists the audit files of dir in the order they were written:
// rotated ones (compressed or not) by name, then the live one.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		switch {
		case !strings.HasPrefix(n, rotatedPrefix):
		case strings.HasSuffix(n, ".log.gz"):
			out = append(out, filepath.Join(dir, n))
		case strings.HasSuffix(n, ".log"):
			// Stopped between writing the copy and removing the original:
			// the copy is whole (renamed into place only once synced).
			if _, err := os.Stat(filepath.Join(dir, n+".gz")); err != nil {
				out = append(out, filepath.Join(dir, n))
			}
		}
	}
	sort.Strings(out)
	if _, err := os.Stat(filepath.Join(dir, FileName)); err == nil {
		out = append(out, filepath.Join(dir, FileName))
	}
	return out, nil
}

// rotatedAt reads the time a rotated file was closed from its name.
func rotatedAt(name string) (time.Time, bool) {
	n := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(name), ".gz"), ".log")
	t, err := time.Parse("20060102T150405.000000000Z", strings.TrimPrefix(n, rotatedPrefix))
	return t, err == nil
}

// retain compresses rotated files older than KeepUncompressed and removes
// those older than Keep; a younger file is never removed. Failures leave
// the file as it is, to be tried at the next rotation.
func retain(dir string, now time.Time) {
	files, err := Files(dir)
	if err != nil {
		return
	}
	for _, f := range files {
		at, ok := rotatedAt(f)
		if !ok {
			continue
		}
		switch age := now.Sub(at); {
		case age > Keep:
			os.Remove(f)
		case age > KeepUncompressed && strings.HasSuffix(f, ".log"):
			compress(f)
		}
	}
}

// compress replaces f by f.gz, removing f only once the copy is on disk.
func compress(f string) error {
	in, err := os.Open(f)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := f + ".gz.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f+".gz")
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Remove(f)
}
