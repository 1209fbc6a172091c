// Package audit writes the audit trail: one JSON object per line, separate
// from the operator log, with the fields PCI-DSS Requirement 10.2.2 asks for
// (who, what, when, where from, which resource, outcome), bound into a
// forward-secure keyed chain.
//
// The chain: every record carries the MAC of its own bytes and the previous
// record's MAC, under the key of its epoch (HMAC-SHA256). An epoch is
// EpochRecords records or EpochDuration, whichever ends first; it closes with
// a seal record, after which the key is replaced by a one-way function of
// itself (Evolve) and forgotten. Whoever takes the worker learns only the
// current key: the records of earlier epochs cannot be rewritten without the
// auditor's first key showing it. The writer's position (chain, epoch, key,
// last sequence number and MAC) is in a state file that is replaced
// atomically before each epoch's first record, so a restarted worker goes on
// with the same chain; one that finds no state starts a new chain, from a
// new first key.
package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// FileName is the live audit log's name inside the audit directory; rotated
// files are named by Rotate.
const FileName = "audit.log"

// Event types.
const (
	TypeServiceStart    = "service_start"
	TypeServiceStop     = "service_stop"
	TypePolicyApplied   = "policy_applied"
	TypePacketDenied    = "packet_denied"
	TypeOverride        = "override_in_effect"
	TypePrivilegeDrop   = "privilege_drop"
	TypeEventsLost      = "events_lost"
	TypePolicyWarning   = "policy_warning"
	TypeWorkerRestarted = "worker_restarted"
	TypeLinkChanged     = "link_changed"
	TypePolicyRejected  = "policy_rejected"
	TypeMonitorMode     = "monitor_mode"
	TypeChainStart      = "chain_start"
	TypeEpochSealed     = "epoch_sealed"
	TypeRotated         = "audit_rotated"
	TypeRecordsLost     = "audit_records_lost"
	// TypeDetached is written by `pci-segment detach`, run as root
	// outside the service, to syslog beside the seals: it holds no key of
	// the chain, so the record is not in the log.
	TypeDetached = "enforcement_detached"
)

// Epoch length: a seal and a new key after this many records or this long,
// whichever comes first.
const (
	EpochRecords  = 1000
	EpochDuration = 10 * time.Minute
)

// Record is one audit entry. Seq, Epoch, Time and Host are filled by the
// Writer, MAC on the line it writes.
type Record struct {
	Seq    uint64 `json:"seq"`
	Epoch  uint64 `json:"epoch"`
	Time   string `json:"time"`
	TimeNS int64  `json:"time_ns"`
	Host   string `json:"host"`
	Type   string `json:"type"`
	// Outcome is success, failure, allow or deny.
	Outcome string `json:"outcome"`
	// Who caused it (a process, a peer address).
	Who string `json:"who"`
	// Where from: an interface, a file.
	Origin string `json:"origin,omitempty"`
	// Which resource it concerns.
	Resource string `json:"resource,omitempty"`
	// Details specific to the type.
	Details map[string]any `json:"details,omitempty"`
}

// macField is how a line carries its MAC: appended as the last member.
const macField = `,"mac":"`

// Key is a chain key: the first key of a chain, or an epoch's.
type Key [32]byte

// NewKey returns a fresh random key.
func NewKey() (Key, error) {
	var k Key
	_, err := rand.Read(k[:])
	return k, err
}

// Evolve is the one-way step from an epoch's key to the next one's.
func Evolve(k Key) Key {
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("pci-segment audit epoch key"))
	var next Key
	copy(next[:], m.Sum(nil))
	return next
}

// mac binds body to the previous MAC under key.
func mac(key Key, prev [32]byte, body []byte) [32]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(prev[:])
	m.Write(body)
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// State is the writer's position in its chain, as the state file holds it.
type State struct {
	Chain string `json:"chain"`
	Epoch uint64 `json:"epoch"`
	Key   string `json:"key"`
	// Seq and MAC are the last record written before this epoch began.
	Seq uint64 `json:"seq"`
	MAC string `json:"mac"`
}

// StateFile is the state file's name in the worker's state directory.
const StateFile = "audit-state.json"

// Options tune a Writer; zero values take the defaults.
type Options struct {
	// MaxSize rotates the live file once it holds this many bytes.
	MaxSize int64
	// SyncEvery bounds how long a written record may wait for fsync.
	SyncEvery time.Duration
	// Anchor receives each seal record's line, for an external copy
	// (syslog) that makes a truncated tail detectable.
	Anchor func(line []byte)
	// Copy, when set, receives every record's line as it is written: a
	// prompt copy for a central collector (syslog; PCI-DSS Req 10.3.3).
	Copy func(line []byte)
	// OnError hears every write failure and how many records it lost,
	// for the operator's log and the metrics.
	OnError func(err error, lost int)
}

// Writer appends records to the chain. It is safe for concurrent use.
type Writer struct {
	mu       sync.Mutex
	dir      string
	stateDir string
	opt      Options
	host     string

	f    *os.File
	bw   *bufio.Writer
	size int64

	chain      string
	epoch      uint64
	key        Key
	prev       [32]byte
	seq        uint64
	inEpoch    int
	epochStart time.Time
	dirty      bool
	rotated    time.Time // when the live file was started
	stop       chan struct{}
	done       chan struct{}
	closing    sync.Once // the first Close stops the syncer and closes the file
	closed     bool      // under mu: Write refuses, never drops silently

	// The last record on disk, where a failed write rolls the chain back
	// to; the records lost since, told by a gap record once writing works
	// again.
	durSeq  uint64
	durMAC  [32]byte
	durSize int64
	lost    int
	lostWhy string
	gapIn   bool // the buffer holds the gap record

	sealLine  []byte // the last seal, for the anchor once it is on disk
	retaining atomic.Bool

	// Reused for every record: the encoder and the epoch's MAC.
	line []byte
	keys []string
	buf  bytes.Buffer
	enc  *json.Encoder
	h    hash.Hash
	hkey Key
}

// ErrNoState is returned by LoadState when the state directory holds none.
var ErrNoState = errors.New("no audit chain state")

// LoadState reads the chain state in stateDir.
func LoadState(stateDir string) (State, error) {
	var s State
	// The account's file, read by root too (status, report, verify):
	// opened without following a link, and read to a bound.
	f, err := os.OpenFile(filepath.Join(stateDir, StateFile), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return s, ErrNoState
	}
	if err != nil {
		return s, fmt.Errorf("read audit chain state (a symbolic link is refused): %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return s, fmt.Errorf("read audit chain state: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("audit chain state %s: %w", filepath.Join(stateDir, StateFile), err)
	}
	return s, nil
}

func (w *Writer) saveState() error {
	s := State{Chain: w.chain, Epoch: w.epoch, Key: hex.EncodeToString(w.key[:]), Seq: w.seq, MAC: hex.EncodeToString(w.prev[:])}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(w.stateDir, "."+StateFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write audit chain state: %w", err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(w.stateDir, StateFile))
	}
	if err != nil {
		return fmt.Errorf("write audit chain state: %w", err)
	}
	return nil
}

// Open opens the chain in dir, going on from the state in stateDir, or,
// when there is none, starting a new chain from first (the loader's key,
// of which the auditor holds a copy) named chain. A zero first means no key
// was handed over: the chain then starts from a key of its own, and its
// chain-start record says that the auditor has none.
func Open(dir, stateDir string, chain string, first Key, opt Options) (*Writer, error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("read host name for audit records: %w", err)
	}
	if opt.MaxSize <= 0 {
		opt.MaxSize = 64 << 20
	}
	if opt.SyncEvery <= 0 {
		opt.SyncEvery = 100 * time.Millisecond
	}
	w := &Writer{dir: dir, stateDir: stateDir, opt: opt, host: host, stop: make(chan struct{}), done: make(chan struct{})}
	w.enc = json.NewEncoder(&w.buf)
	if err := w.openFile(); err != nil {
		return nil, err
	}
	st, err := LoadState(stateDir)
	switch {
	case err == nil:
		err = w.resume(st)
	case errors.Is(err, ErrNoState):
		err = w.start(chain, first)
	}
	if err == nil {
		err = w.flush(true)
	}
	if err != nil {
		w.f.Close()
		return nil, err
	}
	go w.syncLoop()
	return w, nil
}

func (w *Writer) openFile() error {
	f, err := os.OpenFile(filepath.Join(w.dir, FileName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	w.f, w.bw, w.size = f, bufio.NewWriterSize(f, 256<<10), st.Size()
	w.durSize = w.size
	// Age counts from when this writer took the file: a restart can
	// delay a time rotation, never bring one forward.
	w.rotated = time.Now()
	return nil
}

// start begins a new chain with a chain-start record.
func (w *Writer) start(chain string, first Key) error {
	held := "the loader's first key, a copy of which the loader keeps in its key directory (--key-dir) as " + chain + ".key"
	if first == (Key{}) || chain == "" {
		k, err := NewKey()
		if err != nil {
			return fmt.Errorf("make a first audit key: %w", err)
		}
		var id [16]byte
		rand.Read(id[:])
		first, chain = k, hex.EncodeToString(id[:])
		held = "none: no first key was handed over, so this chain's MACs cannot be checked by the auditor"
	}
	w.chain, w.key, w.epoch, w.seq, w.prev = chain, first, 0, 0, [32]byte{}
	w.epochStart = time.Now()
	if err := w.saveState(); err != nil {
		return err
	}
	return w.append(Record{Type: TypeChainStart, Outcome: "success", Who: "pci-segment worker",
		Details: map[string]any{"chain": chain, "epoch_records": EpochRecords, "epoch_seconds": EpochDuration.Seconds(),
			"first_key": held}})
}

// resume goes on from st: records of st's epoch written after it are read
// back from the live file and checked with st's key, so that the chain
// continues from the last of them.
func (w *Writer) resume(st State) error {
	key, err1 := hex.DecodeString(st.Key)
	prev, err2 := hex.DecodeString(st.MAC)
	if err1 != nil || err2 != nil || len(key) != 32 || len(prev) != 32 {
		return fmt.Errorf("audit chain state: malformed key or MAC")
	}
	w.chain, w.epoch, w.seq = st.Chain, st.Epoch, st.Seq
	copy(w.key[:], key)
	copy(w.prev[:], prev)
	tail, err := linesAfter(w.dir, st.Seq)
	if err != nil {
		return err
	}
	unverified := 0
	for _, line := range tail {
		r, body, m, err := parseLine(line)
		if err == nil && r.Seq <= w.seq {
			continue
		}
		if err != nil || unverified > 0 || r.Seq != w.seq+1 || r.Epoch != w.epoch || mac(w.key, w.prev, body) != m {
			unverified++ // the chain goes on from the last record that verifies
			continue
		}
		w.seq, w.prev = r.Seq, m
		w.inEpoch++
		if r.Type == TypeEpochSealed {
			// Stopped between a seal and saving the state.
			w.key, w.epoch, w.inEpoch = Evolve(w.key), w.epoch+1, 0
			if err := w.saveState(); err != nil {
				return err
			}
		}
	}
	w.epochStart = time.Now()
	d := map[string]any{"chain": w.chain, "resumed_at_seq": w.seq}
	if unverified > 0 {
		// A part of a line a crash left, or worse: cut the live file
		// back to the last record that verifies, so that the chain goes
		// on from whole records, and count the rest in a gap record.
		if err := w.cutAfter(w.seq); err != nil {
			return err
		}
		w.lost, w.lostWhy = unverified, fmt.Sprintf("lines after record %d did not verify when the writer restarted, and were cut", w.seq)
		d["unverified_lines_cut"] = unverified
	}
	w.durSeq, w.durMAC, w.durSize = w.seq, w.prev, w.size
	return w.append(Record{Type: TypeServiceStart, Outcome: "success", Who: "pci-segment worker", Details: d})
}

// linesAfter reads the lines written since record seq: from the newest
// files back to the one that holds seq (a rotation may have come since).
func linesAfter(dir string, seq uint64) ([][]byte, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	var tail [][]byte
	for i := len(files) - 1; i >= 0; i-- {
		lines, err := readLines(files[i])
		if err != nil {
			return nil, err
		}
		tail = append(lines, tail...)
		if len(lines) > 0 {
			if r, _, _, err := parseLine(lines[0]); err == nil && r.Seq <= seq {
				break
			}
		}
	}
	return tail, nil
}

// cutAfter truncates the live file after the line of record seq (or to
// nothing if it holds none of the records up to seq).
func (w *Writer) cutAfter(seq uint64) error {
	b, err := os.ReadFile(filepath.Join(w.dir, FileName))
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	keep := 0
	for off := 0; off < len(b); {
		end := bytes.IndexByte(b[off:], '\n')
		if end < 0 {
			break
		}
		if r, _, _, err := parseLine(b[off : off+end]); err == nil && r.Seq <= seq {
			keep = off + end + 1
		}
		off += end + 1
	}
	if err := w.f.Truncate(int64(keep)); err != nil {
		return fmt.Errorf("cut the audit log back to record %d: %w", seq, err)
	}
	w.size = int64(keep)
	return nil
}

// Write appends r to the chain. Its error is for the caller to count: a
// record is never dropped silently.
func (w *Writer) Write(r Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if err := w.maybeSeal(time.Now()); err != nil {
		return err
	}
	return w.append(r)
}

// maybeSeal ends the epoch when it is full or old.
func (w *Writer) maybeSeal(now time.Time) error {
	if w.inEpoch < EpochRecords && now.Sub(w.epochStart) < EpochDuration {
		return nil
	}
	return w.seal(now, true)
}

// seal writes the epoch's seal, passes it to the anchor, then evolves the
// key, forgets the old one and saves the state before the next record.
func (w *Writer) seal(now time.Time, mayRotate bool) error {
	seal := Record{Type: TypeEpochSealed, Outcome: "success", Who: "pci-segment worker",
		Details: map[string]any{"chain": w.chain, "records": w.inEpoch}}
	if err := w.append(seal); err != nil {
		return err
	}
	// The seal must be on disk before the key moves on and the state
	// says the epoch is over; if it is not, the next write seals again.
	if err := w.flush(true); err != nil {
		return err
	}
	if w.opt.Anchor != nil {
		w.opt.Anchor(w.sealLine)
	}
	// The old key goes: overwritten here and in the MAC's state.
	next := Evolve(w.key)
	w.key, w.epoch, w.inEpoch, w.epochStart = next, w.epoch+1, 0, now
	w.h, w.hkey = nil, Key{}
	if err := w.saveState(); err != nil {
		return err
	}
	if mayRotate && w.size >= w.opt.MaxSize {
		return w.rotate()
	}
	return nil
}

// append writes one record, chained, to the buffer; after a failed write,
// a gap record saying how many were lost goes first.
func (w *Writer) append(r Record) error {
	if w.lost > 0 && !w.gapIn {
		gap := Record{Type: TypeRecordsLost, Outcome: "failure", Who: "pci-segment worker", Resource: FileName,
			Details: map[string]any{"count": w.lost, "reason": w.lostWhy}}
		if err := w.appendOne(gap); err != nil {
			return err
		}
		w.gapIn = true
	}
	return w.appendOne(r)
}

func (w *Writer) appendOne(r Record) error {
	now := time.Now().UTC()
	r.Seq, r.Epoch = w.seq+1, w.epoch
	r.Time, r.TimeNS, r.Host = now.Format(time.RFC3339Nano), now.UnixNano(), w.host
	body, err := w.encode(&r)
	if err != nil {
		return fmt.Errorf("encode audit record %d: %w", r.Seq, err)
	}
	if w.h == nil || w.hkey != w.key {
		w.h, w.hkey = hmac.New(sha256.New, w.key[:]), w.key
	}
	w.h.Reset()
	w.h.Write(w.prev[:])
	w.h.Write(body)
	var m [32]byte
	w.h.Sum(m[:0])
	line := make([]byte, 0, len(body)+len(macField)+67)
	line = append(line, body[:len(body)-1]...)
	line = append(line, macField...)
	line = hex.AppendEncode(line, m[:])
	line = append(line, '"', '}', '\n')
	if _, err := w.bw.Write(line); err != nil {
		w.rollback(err)
		if r.Type != TypeRecordsLost {
			w.lost++ // r itself, which never got its number
		}
		return fmt.Errorf("write audit record %d: %w", r.Seq, err)
	}
	w.seq, w.prev, w.dirty = r.Seq, m, true
	w.inEpoch++
	w.size += int64(len(line))
	if r.Type == TypeEpochSealed {
		w.sealLine = line[:len(line)-1]
	}
	if w.opt.Copy != nil {
		w.opt.Copy(line[:len(line)-1])
	}
	// Not between a seal and the key moving on: seal rotates after.
	if w.size >= w.opt.MaxSize && r.Type != TypeEpochSealed {
		return w.rotate()
	}
	return nil
}

// encode is json.Marshal of r, written out by hand for the fixed members
// (the bulk of the cost at a flood's rate); Details goes through the JSON
// encoder. The bytes are the same as json.Marshal's, so any JSON reader
// reads them back; the MAC is over these bytes, not over a re-encoding.
func (w *Writer) encode(r *Record) ([]byte, error) {
	b := w.line[:0]
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"epoch":`...)
	b = strconv.AppendUint(b, r.Epoch, 10)
	b = appendMember(b, "time", r.Time, false)
	b = append(b, `,"time_ns":`...)
	b = strconv.AppendInt(b, r.TimeNS, 10)
	b = appendMember(b, "host", r.Host, false)
	b = appendMember(b, "type", r.Type, false)
	b = appendMember(b, "outcome", r.Outcome, false)
	b = appendMember(b, "who", r.Who, false)
	b = appendMember(b, "origin", r.Origin, true)
	b = appendMember(b, "resource", r.Resource, true)
	if len(r.Details) > 0 {
		b = append(b, `,"details":{`...)
		w.keys = w.keys[:0]
		for k := range r.Details {
			w.keys = append(w.keys, k)
		}
		slices.Sort(w.keys)
		for i, k := range w.keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			switch v := r.Details[k].(type) {
			case string:
				b = appendString(b, v)
			case int:
				b = strconv.AppendInt(b, int64(v), 10)
			case uint16:
				b = strconv.AppendUint(b, uint64(v), 10)
			case uint32:
				b = strconv.AppendUint(b, uint64(v), 10)
			case uint64:
				b = strconv.AppendUint(b, v, 10)
			case bool:
				b = strconv.AppendBool(b, v)
			default:
				w.buf.Reset()
				if err := w.enc.Encode(v); err != nil {
					return nil, err
				}
				b = append(b, bytes.TrimSuffix(w.buf.Bytes(), []byte{'\n'})...)
			}
		}
		b = append(b, '}')
	}
	b = append(b, '}')
	w.line = b
	return b, nil
}

// appendMember appends ,"name":"value" with value escaped as JSON does.
func appendMember(b []byte, name, value string, omitEmpty bool) []byte {
	if omitEmpty && value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendString appends value as a JSON string, escaped as encoding/json
// escapes it.
func appendString(b []byte, value string) []byte {
	b = append(b, '"')
	for i := 0; i < len(value); {
		c := value[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			b = append(b, '\\', "nrtbf"[strings.IndexByte("\n\r\t\b\f", c)])
			i++
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			i++
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(value[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				b = append(b, `\ufffd`...)
			case r == '\u2028' || r == '\u2029':
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			default:
				b = append(b, value[i:i+size]...)
			}
			i += size
		}
	}
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// flush writes the buffer out, and with sync also to the disk. A failure
// (a full disk, a read-only file system) rolls back to the last record on
// disk.
func (w *Writer) flush(sync bool) error {
	if err := w.bw.Flush(); err != nil {
		w.rollback(err)
		return fmt.Errorf("write audit log: %w", err)
	}
	if sync && w.dirty {
		if err := w.f.Sync(); err != nil {
			w.rollback(err)
			return fmt.Errorf("sync audit log: %w", err)
		}
		w.dirty = false
	}
	w.durSeq, w.durMAC, w.durSize = w.seq, w.prev, w.size
	if w.gapIn {
		w.lost, w.gapIn = 0, false
	}
	return nil
}

// rollback forgets the records not on disk: the chain goes on from the
// last one that is, the file is cut back to it (a part of a line a full
// disk took stays out), and they are counted lost, for the gap record.
func (w *Writer) rollback(err error) {
	n := int(w.seq - w.durSeq)
	if w.gapIn {
		n-- // the gap record itself
	}
	w.lost += n
	w.gapIn, w.lostWhy = false, err.Error()
	w.seq, w.prev, w.size = w.durSeq, w.durMAC, w.durSize
	w.inEpoch = max(0, w.inEpoch-n)
	w.bw.Reset(w.f)
	w.f.Truncate(w.durSize)
	if w.opt.OnError != nil {
		w.opt.OnError(err, n)
	}
}

// syncLoop batches fsync: a record waits at most SyncEvery for the disk.
func (w *Writer) syncLoop() {
	defer close(w.done)
	t := time.NewTicker(w.opt.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.mu.Lock()
			w.flush(true)
			w.maybeSeal(now)
			if now.Sub(w.rotated) >= RotateEvery {
				w.rotate()
			}
			w.mu.Unlock()
		}
	}
}

// Sync writes and syncs what is buffered; for tests and for stopping.
func (w *Writer) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flush(true)
}

// Close seals the epoch when it holds records (the next writer goes on
// from the state), syncs and closes the log. It does not rotate after that
// seal: the rotation record would follow the last anchored record.
func (w *Writer) Close() error {
	first := false
	w.closing.Do(func() { first = true; close(w.stop) })
	<-w.done
	if !first {
		return nil // closed already, or by a Close running now
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	// A clean stop seals what the epoch holds, so that the state (and the
	// syslog copy) anchor the log to its last record: a cut of the tail
	// then shows. A crash leaves the epoch open, its tail unanchored.
	var err error
	if w.inEpoch > 0 {
		err = w.seal(time.Now(), false)
	}
	if ferr := w.flush(true); err == nil {
		err = ferr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrClosed is Write's error after Close: the record is not written.
var ErrClosed = errors.New("audit log closed: record not written")

// Seq is the sequence number of the last record written.
func (w *Writer) Seq() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}
