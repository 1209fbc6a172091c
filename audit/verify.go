package audit

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// readLines reads a file's lines, decompressing a .gz.
func readLines(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read audit file: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("read audit file %s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	var lines [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		return lines, fmt.Errorf("read audit file %s: %w", path, err)
	}
	return lines, nil
}

// parseLine splits a written line into its record, the bytes its MAC
// covers (the line without its MAC member) and the MAC.
func parseLine(line []byte) (Record, []byte, [32]byte, error) {
	var r Record
	var m [32]byte
	i := bytes.LastIndex(line, []byte(macField))
	if i < 0 || !bytes.HasSuffix(line, []byte(`"}`)) || len(line)-2-(i+len(macField)) != 64 {
		return r, nil, m, errors.New("no MAC at the end of the line")
	}
	if _, err := hex.Decode(m[:], line[i+len(macField):len(line)-2]); err != nil {
		return r, nil, m, errors.New("malformed MAC")
	}
	body := append(bytes.Clone(line[:i]), '}')
	if err := json.Unmarshal(body, &r); err != nil {
		return r, nil, m, fmt.Errorf("not a JSON record: %w", err)
	}
	return r, body, m, nil
}

// Each calls fn with every record of dir's audit files in order, rotated
// and compressed ones too, without verifying them (Verify does); a line
// that does not parse stops it with an error.
func Each(dir string, fn func(Record)) error {
	files, err := Files(dir)
	if err != nil {
		return err
	}
	for _, file := range files {
		lines, err := readLines(file)
		if err != nil {
			return err
		}
		for i, line := range lines {
			r, _, _, err := parseLine(line)
			if err != nil {
				return fmt.Errorf("%s:%d: %w", file, i+1, err)
			}
			fn(r)
		}
	}
	return nil
}

// Problem is the first record that does not verify.
type Problem struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Seq  uint64 `json:"seq,omitempty"`
	// Kind is modified, deleted, reordered, inserted, truncated or
	// malformed.
	Kind string `json:"kind"`
	Why  string `json:"why"`
}

func (p *Problem) Error() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: record %d %s: %s", p.File, p.Seq, p.Kind, p.Why)
	}
	return fmt.Sprintf("%s:%d: record %d %s: %s", p.File, p.Line, p.Seq, p.Kind, p.Why)
}

// Report is what Verify found.
type Report struct {
	Files   []string `json:"files"`
	Records int      `json:"records"`
	Chains  []string `json:"chains"`
	// Keyed says whether MACs were checked (a key was given for every
	// chain); without a key only the order and the links are.
	Keyed   bool   `json:"keyed"`
	LastSeq uint64 `json:"last_seq"`
	// Anchored is the last record the worker's state vouches for: a cut
	// of the records after it would not show (0 without the state).
	Anchored uint64 `json:"anchored"`
	// SealsChecked counts the syslog copies of seals held against the
	// log (audit verify --seals); absent when none were given.
	SealsChecked *int `json:"seals_checked,omitempty"`
	// FromSeq is the first record there: above 1 when retention removed
	// the files before it (each rotated file starts with a record naming
	// its chain, from which the verifier goes on).
	FromSeq uint64 `json:"from_seq"`
	// First and Last are the times of the first and last records read
	// (as they carry them); empty for none.
	First   string   `json:"first,omitempty"`
	Last    string   `json:"last,omitempty"`
	Problem *Problem `json:"problem,omitempty"`
}

// Verify checks every audit file of dir in order, across rotations and
// chain restarts: sequence numbers one after the other, epochs advancing
// only after a seal, and, for each chain whose first key is in keys, every
// MAC. With the worker's state (state non-nil), a log that ends before the
// position the state records was truncated. It stops at the first record
// that does not verify and names it.
func Verify(dir string, keys map[string]Key, state *State) (Report, error) {
	var rep Report
	files, err := Files(dir)
	if err != nil {
		return rep, err
	}
	rep.Files, rep.Keyed = files, true
	var (
		chain   string
		key     Key
		keyed   bool
		epoch   uint64
		prev    [32]byte
		seq     uint64
		started bool
		macs    = map[uint64][32]byte{} // of the current chain, for the state check
		seen    = map[[32]byte]uint64{}
	)
	fail := func(file string, line int, s uint64, kind, why string) (Report, error) {
		rep.Problem = &Problem{File: file, Line: line, Seq: s, Kind: kind, Why: why}
		return rep, rep.Problem
	}
	for _, file := range files {
		lines, err := readLines(file)
		if err != nil {
			return fail(file, 0, 0, "malformed", err.Error())
		}
		for i, line := range lines {
			n := i + 1
			r, body, m, err := parseLine(line)
			if err != nil {
				return fail(file, n, 0, "malformed", err.Error())
			}
			// The oldest file left, its predecessors removed by retention:
			// its first record names the chain and the epoch, whose key
			// the first key gives. That record's own MAC cannot be checked
			// (it links to the removed file), only every one after it.
			// Known gap: so its previous_file, which the age check below
			// reads, could be forged; a retention record carried in the
			// chain at each removal would close it.
			linkUnknown := false
			if !started && i == 0 && file == files[0] && r.Type == TypeRotated {
				c, _ := r.Details["chain"].(string)
				prevFile, _ := r.Details["previous_file"].(string)
				if at, ok := rotatedAt(prevFile); ok && time.Since(at) < Keep {
					return fail(file, n, r.Seq, "deleted (a whole file is missing before this one)",
						fmt.Sprintf("%s, written %s, is younger than the retention period and gone", prevFile, at.Format(time.DateOnly)))
				}
				chain, epoch, seq, started, linkUnknown = c, r.Epoch, r.Seq-1, true, true
				key, keyed = keys[c]
				for range r.Epoch {
					key = Evolve(key)
				}
				rep.Keyed = rep.Keyed && keyed
				rep.Chains = append(rep.Chains, c)
			}
			if rep.FromSeq == 0 {
				rep.FromSeq, rep.First = r.Seq, r.Time
			}
			rep.Last = r.Time
			if r.Type == TypeChainStart {
				c, _ := r.Details["chain"].(string)
				if r.Seq != 1 || r.Epoch != 0 {
					return fail(file, n, r.Seq, "inserted", "a chain start must be record 1 of epoch 0")
				}
				chain, epoch, prev, seq, started = c, 0, [32]byte{}, 0, true
				key, keyed = keys[c]
				rep.Keyed = rep.Keyed && keyed
				rep.Chains = append(rep.Chains, c)
				clear(macs)
			}
			if !started {
				return fail(file, n, r.Seq, "deleted", "the records before this one, back to its chain's start, are missing")
			}
			switch {
			case r.Seq == seq:
				return fail(file, n, r.Seq, "inserted", fmt.Sprintf("sequence number %d appears twice", r.Seq))
			case r.Seq < seq:
				return fail(file, n, r.Seq, "reordered", fmt.Sprintf("record %d after record %d", r.Seq, seq))
			case r.Seq > seq+1:
				if i+1 < len(lines) {
					if next, _, _, err := parseLine(lines[i+1]); err == nil && next.Seq == seq+1 {
						return fail(file, n, r.Seq, "reordered", fmt.Sprintf("records %d and %d are swapped", seq+1, r.Seq))
					}
				}
				kind := "deleted"
				if i == 0 && file != files[0] {
					kind = "deleted (a whole file is missing before this one)"
				}
				return fail(file, n, r.Seq, kind, fmt.Sprintf("records %d to %d are missing", seq+1, r.Seq-1))
			case r.Epoch != epoch:
				return fail(file, n, r.Seq, "modified", fmt.Sprintf("epoch %d where the chain is in epoch %d", r.Epoch, epoch))
			}
			if keyed && !linkUnknown && mac(key, prev, body) != m {
				return fail(file, n, r.Seq, "modified", "its MAC does not match its bytes and the record before it")
			}
			// Without the key, a MAC appearing twice still shows a
			// copied record.
			if s, dup := seen[m]; dup {
				return fail(file, n, r.Seq, "inserted", fmt.Sprintf("the MAC of record %d appears again", s))
			}
			seen[m] = r.Seq
			macs[r.Seq] = m
			prev, seq = m, r.Seq
			rep.Records++
			if r.Type == TypeEpochSealed {
				key, epoch = Evolve(key), epoch+1
			}
		}
	}
	rep.LastSeq = seq
	rep.Keyed = rep.Keyed && len(rep.Chains) > 0 // no chain, no MAC checked
	if state != nil && state.Chain == chain {
		rep.Anchored = state.Seq
		want, _ := hex.DecodeString(state.MAC)
		switch {
		case seq < state.Seq:
			last := ""
			if len(files) > 0 {
				last = files[len(files)-1]
			}
			return fail(last, 0, seq+1, "truncated", fmt.Sprintf("the log ends at record %d, but the worker's state says record %d was written: records %d to %d are missing", seq, state.Seq, seq+1, state.Seq))
		case state.Seq > 0 && !bytes.Equal(want, macOf(macs, state.Seq)):
			return fail(filepath.Join(dir, FileName), 0, state.Seq, "modified", "record the worker's state points at does not carry the MAC the state holds")
		}
	}
	return rep, nil
}

func macOf(macs map[uint64][32]byte, seq uint64) []byte {
	m, ok := macs[seq]
	if !ok {
		return nil
	}
	return m[:]
}

// Seal is an epoch's seal as the external copy (syslog) has it.
type Seal struct {
	Seq uint64
	MAC [32]byte
}

// ReadSeals takes the seal records out of a syslog export: every line that
// holds one, whatever the syslog daemon put before it.
func ReadSeals(path string) ([]Seal, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	var out []Seal
	for _, l := range lines {
		i := bytes.Index(l, []byte(`{"seq":`))
		if i < 0 || !bytes.Contains(l, []byte(`"type":"`+TypeEpochSealed+`"`)) {
			continue
		}
		r, _, m, err := parseLine(bytes.TrimSpace(l[i:]))
		if err != nil {
			continue
		}
		out = append(out, Seal{Seq: r.Seq, MAC: m})
	}
	return out, nil
}

// CheckSeals holds the log against the external copies of its seals: each
// must be in the log, the same record; one the log lacks means the log was
// cut after it, or edited.
func CheckSeals(dir string, seals []Seal) error {
	if len(seals) == 0 {
		return nil
	}
	files, err := Files(dir)
	if err != nil {
		return err
	}
	macs := map[uint64][32]byte{}
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			return err
		}
		for _, l := range lines {
			if r, _, m, err := parseLine(l); err == nil && r.Type == TypeEpochSealed {
				macs[r.Seq] = m
			}
		}
	}
	for _, s := range seals {
		m, ok := macs[s.Seq]
		switch {
		case !ok:
			return &Problem{File: filepath.Join(dir, FileName), Seq: s.Seq, Kind: "truncated",
				Why: fmt.Sprintf("syslog has the seal of record %d, the log does not", s.Seq)}
		case m != s.MAC:
			return &Problem{File: filepath.Join(dir, FileName), Seq: s.Seq, Kind: "modified",
				Why: fmt.Sprintf("the seal of record %d differs from syslog's copy", s.Seq)}
		}
	}
	return nil
}

// KeyFile is how the loader keeps a chain's first key for the auditor:
// one file per chain, named by it, holding the key in hex.
func KeyFile(dir, chain string) string { return filepath.Join(dir, chain+".key") }

// ReadKeys reads first keys: a key file, or a directory of them. A key
// proves nothing if someone other than its keeper could have written it:
// each file, the directory holding it and every directory above must be
// root's or the caller's (never the service account's, whose log the key
// checks) and writable by no one else, a sticky directory aside. Files are
// opened without following a link and judged by the descriptor read.
func ReadKeys(path string) (map[string]Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	files, dir := []string{path}, filepath.Dir(path)
	if st.IsDir() {
		// Listed, not globbed: a directory the caller may not read is
		// an error, not a directory without keys.
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("read audit keys: %w", err)
		}
		files, dir = nil, path
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".key") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	for p := real; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("read audit key: %w", err)
		}
		if err := trusted(p, fi); err != nil {
			return nil, err
		}
		if p == "/" || p == "." {
			break
		}
	}
	keys := map[string]Key{}
	for _, f := range files {
		b, err := readTrusted(f)
		if err != nil {
			return nil, err
		}
		var k Key
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(raw) != len(k) {
			return nil, fmt.Errorf("audit key %s: want %d bytes in hex", f, len(k))
		}
		copy(k[:], raw)
		keys[strings.TrimSuffix(filepath.Base(f), ".key")] = k
	}
	return keys, nil
}

// readTrusted reads a key file through a descriptor opened without
// following a link, after judging that descriptor.
func readTrusted(name string) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read audit key (a symbolic link is refused): %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read audit key: %w", err)
	}
	if err := trusted(name, fi); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(f, 256))
}

// ServiceAccount is the account whose keys an auditor must not trust.
const ServiceAccount = "pci-segment"

// trusted refuses a key file or directory that someone other than root or
// the caller owns (the service account never counts as the caller), or
// that its group or others may write (but for a sticky directory).
func trusted(p string, fi os.FileInfo) error {
	uid := int(fi.Sys().(*syscall.Stat_t).Uid)
	caller := os.Geteuid()
	if u, err := user.Lookup(ServiceAccount); err == nil && u.Uid == strconv.Itoa(caller) {
		caller = 0 // only root's keys for the account
	}
	shared := fi.Mode().Perm()&0o022 != 0 && (!fi.IsDir() || fi.Mode()&os.ModeSticky == 0)
	if fi.Mode()&os.ModeSymlink != 0 {
		shared = false // its target is judged too
	}
	if (uid != 0 && uid != caller) || shared {
		return fmt.Errorf("audit key %s is owned by uid %d with mode %v: a key someone else could have written proves nothing; "+
			"use the loader's key directory (--key-dir, root's), or a copy only you can write", p, uid, fi.Mode().Perm())
	}
	return nil
}

// SyslogMessage frames an audit line as its copies outside the log travel
// to the local syslog socket (the worker's seals, detach's record):
// authpriv.notice, tagged pci-segment-audit, in the local format, without
// a host name, which the daemon adds (journald takes a host name there
// for the tag). The record names its host itself.
func SyslogMessage(line []byte) []byte {
	return fmt.Appendf(nil, "<%d>%s pci-segment-audit[%d]: %s", 10*8+5, time.Now().Format(time.Stamp), os.Getpid(), line)
}
