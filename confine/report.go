package confine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ReportFile is the report's name in the state directory.
const ReportFile = "worker.json"

// maxReportSize bounds what ReadReport reads: a report is a few KiB.
const maxReportSize = 1 << 20

// WriteReport stores r as ReportFile in dir, mode 0644, replacing any older
// report by rename so that a reader never sees half of one.
func WriteReport(dir string, r Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode landlock report: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+ReportFile+".*")
	if err != nil {
		return fmt.Errorf("write landlock report: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write landlock report: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write landlock report: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ReportFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write landlock report: %w", err)
	}
	return nil
}

// ReadReport reads the report in dir. The directory belongs to the worker
// and the reader is usually root, so the file is opened without following
// a symbolic link and without blocking on a FIFO, must be a regular file,
// and is read up to a bound. A missing report is an error wrapping
// fs.ErrNotExist.
func ReadReport(dir string) (Report, error) {
	var r Report
	name := filepath.Join(dir, ReportFile)
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, fmt.Errorf("read landlock report: %w", &os.PathError{Op: "open", Path: name, Err: err})
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return r, fmt.Errorf("read landlock report: %w", err)
	}
	if !st.Mode().IsRegular() {
		return r, fmt.Errorf("read landlock report: %s is not a regular file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxReportSize+1))
	if err != nil {
		return r, fmt.Errorf("read landlock report: %w", err)
	}
	if len(b) > maxReportSize {
		return r, fmt.Errorf("read landlock report: %s is larger than %d bytes", name, maxReportSize)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read landlock report %s: %w", name, err)
	}
	if r.PID <= 0 {
		return r, errors.New("read landlock report: " + name + " names no process")
	}
	return r, nil
}
