package privilege

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// IDs are the four user or group ids the kernel keeps for a thread.
type IDs struct {
	Real, Effective, Saved, FS uint32
}

// SeccompMode is the Seccomp field of a status file.
type SeccompMode uint8

// The seccomp modes, as in linux/seccomp.h.
const (
	SeccompDisabled SeccompMode = 0
	SeccompStrict   SeccompMode = 1
	SeccompFilter   SeccompMode = 2
)

func (m SeccompMode) String() string {
	switch m {
	case SeccompDisabled:
		return "disabled"
	case SeccompStrict:
		return "strict"
	case SeccompFilter:
		return "filter"
	}
	return "SeccompMode(" + strconv.Itoa(int(m)) + ")"
}

// ThreadState is the privilege state of one thread, from its
// /proc/PID/task/TID/status file.
type ThreadState struct {
	TID  int    // Pid field: the thread id
	TGID int    // Tgid field: the process id
	Name string // Name field, as the kernel escaped it

	UID    IDs
	GID    IDs
	Groups []uint32 // supplementary groups; empty, not nil, when none

	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64

	NoNewPrivs bool
	Seccomp    SeccompMode
	// SeccompFilters is the number of attached filters, or -1 on kernels
	// before 5.9, which do not report it.
	SeccompFilters int
}

// ParseError reports a status file the parser does not accept.
type ParseError struct {
	File  string // the file name, for the message only
	Line  int    // 1-based; 0 when the problem is a missing field
	Field string // the status field, when known
	Err   error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// requiredFields must each appear exactly once; Seccomp_filters is optional.
var requiredFields = []string{
	"Name", "Tgid", "Pid", "Uid", "Gid", "Groups",
	"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
	"NoNewPrivs", "Seccomp",
}

// ParseStatus parses the text of a /proc status file. file names it in
// errors. Fields the parser does not use are only checked for the "Key:"
// shape; the ones it uses must have exactly the kernel's format, each once.
func ParseStatus(file string, data []byte) (ThreadState, error) {
	st := ThreadState{SeccompFilters: -1}
	text := string(data)
	if !strings.HasSuffix(text, "\n") {
		return st, &ParseError{File: file, Err: errors.New("not newline-terminated")}
	}
	seen := make(map[string]bool, len(requiredFields)+1)
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || key == "" {
			return st, &ParseError{File: file, Line: i + 1, Err: fmt.Errorf("want \"Key:\\tvalue\", got %q", line)}
		}
		if !isUsed(key) {
			continue
		}
		if seen[key] {
			return st, &ParseError{File: file, Line: i + 1, Field: key, Err: errors.New("repeated")}
		}
		seen[key] = true
		value, ok = strings.CutPrefix(value, "\t")
		if !ok {
			return st, &ParseError{File: file, Line: i + 1, Field: key, Err: errors.New("no tab after the colon")}
		}
		if err := st.set(key, value); err != nil {
			return st, &ParseError{File: file, Line: i + 1, Field: key, Err: err}
		}
	}
	for _, key := range requiredFields {
		if !seen[key] {
			return st, &ParseError{File: file, Field: key, Err: errors.New("missing")}
		}
	}
	return st, nil
}

func isUsed(key string) bool {
	return key == "Seccomp_filters" || slices.Contains(requiredFields, key)
}

func (st *ThreadState) set(key, value string) error {
	var err error
	switch key {
	case "Name":
		st.Name = value
	case "Tgid":
		st.TGID, err = parseID(value)
	case "Pid":
		st.TID, err = parseID(value)
	case "Uid":
		st.UID, err = parseIDs(value)
	case "Gid":
		st.GID, err = parseIDs(value)
	case "Groups":
		st.Groups, err = parseGroups(value)
	case "CapInh":
		st.CapInh, err = parseCapMask(value)
	case "CapPrm":
		st.CapPrm, err = parseCapMask(value)
	case "CapEff":
		st.CapEff, err = parseCapMask(value)
	case "CapBnd":
		st.CapBnd, err = parseCapMask(value)
	case "CapAmb":
		st.CapAmb, err = parseCapMask(value)
	case "NoNewPrivs":
		switch value {
		case "0":
		case "1":
			st.NoNewPrivs = true
		default:
			err = fmt.Errorf("want 0 or 1, got %q", value)
		}
	case "Seccomp":
		switch value {
		case "0", "1", "2":
			st.Seccomp = SeccompMode(value[0] - '0')
		default:
			err = fmt.Errorf("want 0, 1 or 2, got %q", value)
		}
	case "Seccomp_filters":
		var n uint64
		n, err = strconv.ParseUint(value, 10, 31)
		st.SeccompFilters = int(n)
	}
	return err
}

// parseID parses a positive pid or tid.
func parseID(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("zero id")
	}
	return int(n), nil
}

// parseIDs parses "real\teffective\tsaved\tfs".
func parseIDs(s string) (IDs, error) {
	f := strings.Split(s, "\t")
	if len(f) != 4 {
		return IDs{}, fmt.Errorf("want 4 tab-separated ids, got %q", s)
	}
	var n [4]uint32
	for i, field := range f {
		v, err := strconv.ParseUint(field, 10, 32)
		if err != nil {
			return IDs{}, err
		}
		n[i] = uint32(v)
	}
	return IDs{Real: n[0], Effective: n[1], Saved: n[2], FS: n[3]}, nil
}

// parseGroups parses the kernel's "g1 g2 g3 " (note the trailing space, a
// lone space when there are no groups).
func parseGroups(s string) ([]uint32, error) {
	body, ok := strings.CutSuffix(s, " ")
	if !ok {
		return nil, fmt.Errorf("want a trailing space, got %q", s)
	}
	groups := []uint32{}
	if body == "" {
		return groups, nil
	}
	for _, field := range strings.Split(body, " ") {
		v, err := strconv.ParseUint(field, 10, 32)
		if err != nil {
			return nil, err
		}
		groups = append(groups, uint32(v))
	}
	return groups, nil
}

// parseCapMask parses the kernel's 16 hex digits.
func parseCapMask(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("want 16 hex digits, got %q", s)
	}
	return strconv.ParseUint(s, 16, 64)
}

// procRoot is where ReadThreads and ReadProcess look; tests point it at a
// fake tree.
var procRoot = "/proc"

// ReadThreads returns the state of every thread of process pid, ordered by
// thread id. A thread that exits while the directory is read is left out;
// an empty result is an error.
func ReadThreads(pid int) ([]ThreadState, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	var threads []ThreadState
	for _, e := range entries {
		tid, err := parseID(e.Name())
		if err != nil {
			return nil, fmt.Errorf("list threads: unexpected entry %s in %s", e.Name(), dir)
		}
		st, err := readStatus(filepath.Join(dir, e.Name(), "status"))
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread exited after ReadDir or after open
		}
		if err != nil {
			return nil, err
		}
		if st.TID != tid || st.TGID != pid {
			return nil, fmt.Errorf("%s/%s/status: describes thread %d of process %d", dir, e.Name(), st.TID, st.TGID)
		}
		threads = append(threads, st)
	}
	if len(threads) == 0 {
		return nil, fmt.Errorf("list threads: no thread left in %s", dir)
	}
	slices.SortFunc(threads, func(a, b ThreadState) int { return a.TID - b.TID })
	return threads, nil
}

func readStatus(file string) (ThreadState, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return ThreadState{}, fmt.Errorf("read thread status: %w", err)
	}
	return ParseStatus(file, data)
}

// Process is the privilege state of one process: its thread-group leader
// (/proc/PID/status), embedded, and every thread.
type Process struct {
	ThreadState
	Threads []ThreadState
}

// ReadProcess returns the state of process pid and all its threads.
func ReadProcess(pid int) (Process, error) {
	leader, err := readStatus(filepath.Join(procRoot, strconv.Itoa(pid), "status"))
	if err != nil {
		return Process{}, err
	}
	if leader.TGID != pid {
		return Process{}, fmt.Errorf("read process %d: status describes process %d", pid, leader.TGID)
	}
	threads, err := ReadThreads(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{ThreadState: leader, Threads: threads}, nil
}

// Uniform returns nil when every thread has the leader's ids, groups,
// capability sets, NoNewPrivs and seccomp state, and otherwise an error
// naming the first thread that differs and how. All of these are per thread
// in the kernel, so a process is only as confined as its least confined
// thread.
func (p Process) Uniform() error {
	for _, t := range p.Threads {
		if d := Diff(p.ThreadState, t); d != "" {
			return fmt.Errorf("thread %d of process %d differs from the leader: %s", t.TID, p.TGID, d)
		}
	}
	return nil
}

// HoldsLess reports whether thread b, differing from the leader a, holds
// only less: the same ids and groups, every capability set a subset of a's,
// NoNewPrivs and seccomp at least as strict. The loader's thread that
// starts the worker is such a thread: its bounding set is emptied so that
// the worker can inherit nothing.
func HoldsLess(a, b ThreadState) bool {
	subset := func(x, y uint64) bool { return y&^x == 0 }
	return a.UID == b.UID && a.GID == b.GID && slices.Equal(a.Groups, b.Groups) &&
		subset(a.CapInh, b.CapInh) && subset(a.CapPrm, b.CapPrm) && subset(a.CapEff, b.CapEff) &&
		subset(a.CapBnd, b.CapBnd) && subset(a.CapAmb, b.CapAmb) &&
		(b.NoNewPrivs || !a.NoNewPrivs) && b.Seccomp >= a.Seccomp && b.SeccompFilters >= a.SeccompFilters
}

// Diff says how thread b differs from the leader a: "" when it does not.
func Diff(a, b ThreadState) string {
	switch {
	case a.UID != b.UID:
		return fmt.Sprintf("uid %v, leader %v", b.UID, a.UID)
	case a.GID != b.GID:
		return fmt.Sprintf("gid %v, leader %v", b.GID, a.GID)
	case !slices.Equal(a.Groups, b.Groups):
		return fmt.Sprintf("groups %v, leader %v", b.Groups, a.Groups)
	case a.CapInh != b.CapInh:
		return fmt.Sprintf("CapInh %016x, leader %016x", b.CapInh, a.CapInh)
	case a.CapPrm != b.CapPrm:
		return fmt.Sprintf("CapPrm %016x, leader %016x", b.CapPrm, a.CapPrm)
	case a.CapEff != b.CapEff:
		return fmt.Sprintf("CapEff %016x, leader %016x", b.CapEff, a.CapEff)
	case a.CapBnd != b.CapBnd:
		return fmt.Sprintf("CapBnd %016x, leader %016x", b.CapBnd, a.CapBnd)
	case a.CapAmb != b.CapAmb:
		return fmt.Sprintf("CapAmb %016x, leader %016x", b.CapAmb, a.CapAmb)
	case a.NoNewPrivs != b.NoNewPrivs:
		return fmt.Sprintf("NoNewPrivs %v, leader %v", b.NoNewPrivs, a.NoNewPrivs)
	case a.Seccomp != b.Seccomp:
		return fmt.Sprintf("seccomp %v, leader %v", b.Seccomp, a.Seccomp)
	case a.SeccompFilters != b.SeccompFilters:
		return fmt.Sprintf("%d seccomp filters, leader %d", b.SeccompFilters, a.SeccompFilters)
	}
	return ""
}
