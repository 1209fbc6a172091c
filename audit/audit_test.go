package audit

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pci-segment/pci-segment/testenv"
)

// chainDirs returns an audit and a state directory and a first key.
func chainDirs(t testing.TB) (dir, state, chain string, first Key) {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return t.TempDir(), t.TempDir(), "c0ffee", k
}

func writeN(t testing.TB, w *Writer, n int, rotateEvery int) {
	t.Helper()
	for i := range n {
		if err := w.Write(Record{Type: TypePacketDenied, Outcome: "deny", Who: "10.0.0.1",
			Resource: "10.0.0.2:22", Details: map[string]any{"i": i}}); err != nil {
			t.Fatal(err)
		}
		if rotateEvery > 0 && i > 0 && i%rotateEvery == 0 {
			if err := w.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// allSeqs reads every record of every file and counts each sequence
// number.
func allSeqs(t *testing.T, dir string) map[uint64]int {
	t.Helper()
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]int{}
	for _, f := range files {
		lines, err := readLines(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			r, _, _, err := parseLine(l)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			seen[r.Seq]++
		}
	}
	return seen
}

// 50,000 records with rotations by size and by request (what SIGUSR1
// does) in between: every sequence number exactly once, and the chain
// verifies across every file.
func TestFiftyThousandRecordsAcrossTwentyRotations(t *testing.T) {
	dir, state, chain, first := chainDirs(t)
	w, err := Open(dir, state, chain, first, Options{MaxSize: 600 << 10})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 50000, 5000) // 9 rotations asked for; the size limit adds the rest
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := Files(dir)
	if len(files) < 21 {
		t.Fatalf("%d files, want at least 21 (20 rotations)", len(files))
	}
	seen := allSeqs(t, dir)
	st, err := LoadState(state)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, map[string]Key{chain: first}, &st)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.Keyed || rep.Records != len(seen) || uint64(len(seen)) != rep.LastSeq {
		t.Errorf("report %+v; %d distinct sequence numbers", rep, len(seen))
	}
	// The span read, across the rotations: the first record's time and
	// the last's, in order.
	began, err1 := time.Parse(time.RFC3339Nano, rep.First)
	ended, err2 := time.Parse(time.RFC3339Nano, rep.Last)
	if err1 != nil || err2 != nil || ended.Before(began) || time.Since(began) > time.Hour {
		t.Errorf("span %q to %q (%v, %v)", rep.First, rep.Last, err1, err2)
	}
	for s := uint64(1); s <= rep.LastSeq; s++ {
		if seen[s] != 1 {
			t.Fatalf("sequence number %d appears %d times", s, seen[s])
		}
	}
	if rep.LastSeq < 50000+50000/EpochRecords {
		t.Errorf("last sequence number %d: the 50,000 records, the seals and rotations are not all there", rep.LastSeq)
	}
}

// tamperable builds a chain of a few thousand records over several files,
// in epochs, and returns its directories and key.
func tamperable(t *testing.T) (dir string, state *State, keys map[string]Key) {
	t.Helper()
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 4000, 1000)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(dir, map[string]Key{chain: first}, &st); err != nil {
		t.Fatalf("the untouched chain: %v", err)
	}
	return dir, &st, map[string]Key{chain: first}
}

// lineOf finds the file and line of record seq.
func lineOf(t *testing.T, dir string, seq uint64) (string, int) {
	t.Helper()
	files, _ := Files(dir)
	for _, f := range files {
		lines, _ := readLines(f)
		for i, l := range lines {
			if r, _, _, err := parseLine(l); err == nil && r.Seq == seq {
				return f, i
			}
		}
	}
	t.Fatalf("record %d not found", seq)
	return "", 0
}

func editLines(t *testing.T, file string, edit func([][]byte) [][]byte) {
	t.Helper()
	lines, err := readLines(file)
	if err != nil {
		t.Fatal(err)
	}
	lines = edit(lines)
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(file, b.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestTamperingIsDetectedAndNamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		seq    uint64 // the record the verifier must name
		kind   string
	}{
		{"one byte changed", func(t *testing.T, dir string) {
			f, i := lineOf(t, dir, 1500)
			editLines(t, f, func(ls [][]byte) [][]byte {
				ls[i] = bytes.Replace(ls[i], []byte(`"10.0.0.1"`), []byte(`"10.0.0.9"`), 1)
				return ls
			})
		}, 1500, "modified"},
		{"one record removed", func(t *testing.T, dir string) {
			f, i := lineOf(t, dir, 2222)
			editLines(t, f, func(ls [][]byte) [][]byte { return append(ls[:i], ls[i+1:]...) })
		}, 2223, "deleted"},
		{"two records swapped", func(t *testing.T, dir string) {
			f, i := lineOf(t, dir, 700)
			editLines(t, f, func(ls [][]byte) [][]byte { ls[i], ls[i+1] = ls[i+1], ls[i]; return ls })
		}, 701, "reordered"},
		{"one record inserted", func(t *testing.T, dir string) {
			f, i := lineOf(t, dir, 3100)
			editLines(t, f, func(ls [][]byte) [][]byte {
				return append(ls[:i+1], append([][]byte{bytes.Clone(ls[i])}, ls[i+1:]...)...)
			})
		}, 3100, "inserted"},
		{"the tail truncated", func(t *testing.T, dir string) {
			editLines(t, filepath.Join(dir, FileName), func(ls [][]byte) [][]byte { return ls[:len(ls)/4] })
		}, 0, "truncated"},
		{"a rotated file deleted", func(t *testing.T, dir string) {
			files, _ := Files(dir)
			os.Remove(files[1])
		}, 0, "deleted (a whole file is missing before this one)"},
		{"a rotated file recompressed with an edit", func(t *testing.T, dir string) {
			files, _ := Files(dir)
			if err := compress(files[2]); err != nil {
				t.Fatal(err)
			}
			gz := files[2] + ".gz"
			lines, err := readLines(gz)
			if err != nil {
				t.Fatal(err)
			}
			lines[10] = bytes.Replace(lines[10], []byte(`"deny"`), []byte(`"allow"`), 1)
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			for _, l := range lines {
				zw.Write(append(l, '\n'))
			}
			zw.Close()
			if err := os.WriteFile(gz, b.Bytes(), 0o640); err != nil {
				t.Fatal(err)
			}
		}, 0, "modified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, state, keys := tamperable(t)
			tc.tamper(t, dir)
			_, err := Verify(dir, keys, state)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("verify passed a tampered log (%v)", err)
			}
			if p.Kind != tc.kind || (tc.seq != 0 && p.Seq != tc.seq) {
				t.Errorf("verify named %+v, want record %d %s", p, tc.seq, tc.kind)
			}
		})
	}
}

// Forward security: whoever holds the worker's current key (its state
// file) can write records of the current epoch, but not rewrite an earlier
// one so that it verifies.
func TestTheCurrentKeyCannotRewriteAnEarlierEpoch(t *testing.T) {
	dir, state, keys := tamperable(t)
	cur, _ := hex.DecodeString(state.Key)
	var k Key
	copy(k[:], cur)
	f, i := lineOf(t, dir, 10) // epoch 0
	editLines(t, f, func(ls [][]byte) [][]byte {
		r, body, _, _ := parseLine(ls[i])
		_, prevBody, prevMAC, _ := parseLine(ls[i-1])
		_ = prevBody
		body = bytes.Replace(body, []byte(`"10.0.0.1"`), []byte(`"10.0.0.7"`), 1)
		m := mac(k, prevMAC, body)
		ls[i] = []byte(fmt.Sprintf(`%s%s%x"}`, body[:len(body)-1], macField, m))
		_ = r
		return ls
	})
	_, err := Verify(dir, keys, state)
	var p *Problem
	if !errors.As(err, &p) || p.Seq != 10 || p.Kind != "modified" {
		t.Errorf("verify of a record rewritten with the current key: %v, want record 10 modified", err)
	}
}

// A restarted writer goes on with the same chain from its state; one
// without state starts a new chain, with a chain-start record, and never
// reuses a key.
func TestRestartsContinueOrStartAChain(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 1500, 0) // into the second epoch
	w.Close()
	w, err = Open(dir, stateDir, "", Key{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 10, 0)
	w.Close()
	st, _ := LoadState(stateDir)
	rep, err := Verify(dir, map[string]Key{chain: first}, &st)
	if err != nil || len(rep.Chains) != 1 || rep.Records != int(rep.LastSeq) {
		t.Fatalf("after a restart with state: %+v, %v; want one chain that verifies", rep, err)
	}

	os.Remove(filepath.Join(stateDir, StateFile))
	second, _ := NewKey()
	w, err = Open(dir, stateDir, "beef", second, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 10, 0)
	w.Close()
	st, _ = LoadState(stateDir)
	rep, err = Verify(dir, map[string]Key{chain: first, "beef": second}, &st)
	if err != nil || len(rep.Chains) != 2 || rep.Chains[1] != "beef" || !rep.Keyed {
		t.Fatalf("a new chain: %+v, %v", rep, err)
	}
	if rep, _ := Verify(dir, map[string]Key{chain: first}, &st); rep.Keyed {
		t.Error("a chain without its key was reported as checked")
	}
	if strings.Contains(string(must(os.ReadFile(filepath.Join(stateDir, StateFile)))), hex.EncodeToString(first[:])) {
		t.Error("the state holds a first key")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkWrite is sustained records per second with the chain and
// batched fsync, the way the worker writes denied packets.
func BenchmarkWrite(b *testing.B) {
	dir, state, chain, first := chainDirs(b)
	w, err := Open(dir, state, chain, first, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	r := Record{Type: TypePacketDenied, Outcome: "deny", Who: "10.0.0.1", Resource: "10.0.0.2:22",
		Details: map[string]any{"direction": "ingress", "protocol": "TCP", "sport": 40000, "dport": 22, "reason": "no_rule"}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
	}
	w.Sync()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// The hand-written encoding is json.Marshal's, byte for byte.
func TestEncodeIsJSONMarshal(t *testing.T) {
	w := &Writer{}
	w.enc = json.NewEncoder(&w.buf)
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "new\nline\r\t\b\f", "\x00\x1f", "<a&b>",
		"caf\u00e9", "\u2028\u2029", "bad\xffutf8", "日本"} {
		for _, r := range []Record{
			{Seq: 1, Epoch: 2, Time: "t", TimeNS: -3, Host: s, Type: "x", Outcome: s, Who: s},
			{Seq: 1 << 63, Origin: s, Resource: s, Details: map[string]any{"k": s, "n": 1.5, "z": []int{1},
				s: true, "i": -4, "u16": uint16(22), "u32": uint32(7), "u64": uint64(1 << 60), "m": map[string]string{"a": s}}},
		} {
			want, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := w.encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encode %q:\n got %s\nwant %s", s, got, want)
			}
		}
	}
}

// A writer restarted after a rotation goes on from the records in the
// rotated file too.
func TestRestartAfterARotationGoesOnFromTheRotatedFile(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 1100, 0)
	w.Rotate()
	writeN(t, w, 5, 0)
	w.Close()
	w, err = Open(dir, stateDir, "", Key{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 5, 0)
	w.Close()
	st, _ := LoadState(stateDir)
	if rep, err := Verify(dir, map[string]Key{chain: first}, &st); err != nil || len(rep.Chains) != 1 {
		t.Fatalf("after a restart past a rotation: %+v, %v", rep, err)
	}
}

// The audit file system full under a running writer (as a read-only one
// would be: a remount with a file open for writing is refused, so the
// test fills the disk instead): the writes fail, each failure is reported
// with the records it lost, and once there is room again the chain goes
// on, first with a gap record that counts them, and verifies whole.
func TestWritesResumeWithAGapRecordAfterTheDiskFilled(t *testing.T) {
	testenv.RequireRoot(t)
	dir, stateDir, chain, first := chainDirs(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	var failures, lostReported int
	w, err := Open(dir, stateDir, chain, first, Options{OnError: func(err error, lost int) { failures++; lostReported += lost }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeN(t, w, 100, 0)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	// Fill what is left.
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	f.Write(make([]byte, 2<<20))
	f.Close()
	writeN(t, w, 50, 0)
	if err := w.Sync(); err == nil {
		t.Fatal("a sync on a full file system succeeded")
	}
	os.Remove(filler)
	writeN(t, w, 30, 0)
	if err := w.Sync(); err != nil {
		t.Fatalf("after room came back: %v", err)
	}
	w.Close()
	if failures == 0 || lostReported != 50 {
		t.Errorf("%d failures reported, %d records lost; want the 50 written while full", failures, lostReported)
	}
	st, _ := LoadState(stateDir)
	if _, err := Verify(dir, map[string]Key{chain: first}, &st); err != nil {
		t.Fatalf("the chain after the spell: %v", err)
	}
	lines, _ := readLines(filepath.Join(dir, FileName))
	gaps := 0
	for _, l := range lines {
		r, _, _, _ := parseLine(l)
		if r.Type == TypeRecordsLost {
			gaps++
			if r.Details["count"] != float64(50) {
				t.Errorf("gap record %+v, want a count of 50", r.Details)
			}
		}
	}
	if gaps != 1 {
		t.Errorf("%d gap records, want 1", gaps)
	}
}

// Retention: a year kept, the last three months uncompressed, nothing
// younger removed.
func TestRetentionCompressesAfterThreeMonthsAndRemovesAfterAYear(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	name := func(age time.Duration) string {
		return filepath.Join(dir, rotatedPrefix+now.Add(-age).UTC().Format("20060102T150405.000000000Z")+".log")
	}
	young, middle, old := name(30*24*time.Hour), name(200*24*time.Hour), name(400*24*time.Hour)
	for _, f := range []string{young, middle, old} {
		if err := os.WriteFile(f, []byte("{}\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	retain(dir, now)
	for f, want := range map[string]bool{young: true, middle: false, middle + ".gz": true, old: false} {
		if _, err := os.Stat(f); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(f), err == nil, want)
		}
	}
	if lines, err := readLines(middle + ".gz"); err != nil || len(lines) != 1 {
		t.Errorf("the compressed file reads %q, %v", lines, err)
	}
}

// The syslog copies of the seals show a tail cut past what the state
// knows: the last sealed epochs gone.
func TestSyslogSealsShowACutTail(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	var syslog bytes.Buffer
	w, err := Open(dir, stateDir, chain, first, Options{Anchor: func(l []byte) {
		syslog.WriteString("Dec  4 00:00:00 host pci-segment-audit[1]: ")
		syslog.Write(l)
		syslog.WriteByte('\n')
	}})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 3500, 0) // three seals, and a fourth as it closes
	w.Close()
	export := filepath.Join(t.TempDir(), "syslog")
	os.WriteFile(export, syslog.Bytes(), 0o640)
	seals, err := ReadSeals(export)
	if err != nil || len(seals) != 4 {
		t.Fatalf("seals %v, %v; want 4", seals, err)
	}
	if err := CheckSeals(dir, seals); err != nil {
		t.Fatalf("an intact log: %v", err)
	}
	// Cut the log back to before the last seal, as one who also removed
	// the state file would (so that the state cannot show it).
	editLines(t, filepath.Join(dir, FileName), func(ls [][]byte) [][]byte { return ls[:2500] })
	var p *Problem
	if err := CheckSeals(dir, seals); !errors.As(err, &p) || p.Kind != "truncated" || p.Seq != seals[2].Seq {
		t.Errorf("a cut tail: %v, want the last seal named", err)
	}
}

// Retention removes the oldest files: what is left verifies from the first
// record of the oldest file, whose chain and epoch it names; a file removed
// before its time is still named.
func TestAChainVerifiesAfterRetentionRemovedItsStart(t *testing.T) {
	dir, state, keys := tamperable(t)
	files, _ := Files(dir)
	old := files[0]
	// Pretend the first file is past retention: rename it so its time
	// stamp is over a year old, in the record that names it too.
	past := filepath.Join(dir, rotatedPrefix+time.Now().Add(-400*24*time.Hour).UTC().Format("20060102T150405.000000000Z")+".log")
	editLines(t, files[1], func(ls [][]byte) [][]byte {
		ls[0] = bytes.Replace(ls[0], []byte(filepath.Base(old)), []byte(filepath.Base(past)), 1)
		return ls
	})
	// That edit breaks record's MAC, which no one can check once its
	// predecessor is gone: remove it, as retention would.
	os.Remove(old)
	rep, err := Verify(dir, keys, state)
	if err != nil || rep.FromSeq <= 1 || !rep.Keyed {
		t.Fatalf("after retention: %+v, %v", rep, err)
	}

	dir, state, keys = tamperable(t)
	files, _ = Files(dir)
	os.Remove(files[0])
	var p *Problem
	if _, err := Verify(dir, keys, state); !errors.As(err, &p) || !strings.Contains(p.Kind, "deleted") {
		t.Errorf("the oldest file removed before its time: %v, want it named deleted", err)
	}
}

// A crash that left part of a line: the next writer cuts it, counts it in
// a gap record, and the chain verifies.
func TestAPartialLineFromACrashIsCutAndCounted(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 100, 0)
	w.Close()
	f, _ := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":102,"epoch":0,"time":"2026-`)
	f.Close()
	w, err = Open(dir, stateDir, "", Key{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 5, 0)
	w.Close()
	st, _ := LoadState(stateDir)
	if _, err := Verify(dir, map[string]Key{chain: first}, &st); err != nil {
		t.Fatalf("after a cut partial line: %v", err)
	}
	lines, _ := readLines(filepath.Join(dir, FileName))
	gaps := 0
	for _, l := range lines {
		if r, _, _, err := parseLine(l); err == nil && r.Type == TypeRecordsLost && r.Details["count"] == float64(1) {
			gaps++
		}
	}
	if gaps != 1 {
		t.Errorf("%d gap records counting the cut line, want 1", gaps)
	}
}

// A seal that fills the file: the rotation waits for the key to move on,
// and the log verifies across it.
func TestASealThatFillsTheFileVerifies(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{MaxSize: 20000})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 3000, 0)
	w.Close()
	st, _ := LoadState(stateDir)
	if _, err := Verify(dir, map[string]Key{chain: first}, &st); err != nil {
		t.Fatal(err)
	}
}

// Close may be called from several goroutines at once (the worker's
// shutdown and its deferred close): one closes, none panics, all return
// after the log is closed.
func TestConcurrentCloseClosesOnce(t *testing.T) {
	dir, state, chain, first := chainDirs(t)
	w, err := Open(dir, state, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 10, 0)
	errs := make(chan error, 8)
	for range 8 {
		go func() { errs <- w.Close() }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Errorf("close: %v", err)
		}
	}
	if err := w.Write(Record{Type: TypePacketDenied}); err == nil {
		t.Error("a write after close succeeded")
	}
	if _, err := Verify(dir, map[string]Key{chain: first}, nil); err != nil {
		t.Errorf("the log after concurrent closes: %v", err)
	}
}

// A clean stop seals the epoch, so that the state anchors the last record:
// a cut of the last few records then shows, where before the next seal it
// could not.
func TestACleanStopAnchorsTheTail(t *testing.T) {
	dir, stateDir, chain, first := chainDirs(t)
	w, err := Open(dir, stateDir, chain, first, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 10, 0)
	// The file at its size: an ordinary seal would rotate after it, and
	// the rotation record would follow the last anchored one.
	w.mu.Lock()
	w.opt.MaxSize = w.size
	w.mu.Unlock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := LoadState(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]Key{chain: first}
	rep, err := Verify(dir, keys, &st)
	if err != nil || rep.Anchored != rep.LastSeq {
		t.Fatalf("after a clean stop: %+v, %v; want every record anchored", rep, err)
	}
	editLines(t, filepath.Join(dir, FileName), func(ls [][]byte) [][]byte { return ls[:len(ls)-3] })
	var p *Problem
	if _, err := Verify(dir, keys, &st); !errors.As(err, &p) || p.Kind != "truncated" {
		t.Errorf("the last three records cut: %v, want truncated", err)
	}
}

// A first key anyone else could have written proves nothing: one the
// service account owns, or one its group or others may write, is refused.
func TestReadKeysRefusesAKeyOthersCouldWrite(t *testing.T) {
	testenv.RequireRoot(t)
	key := strings.Repeat("ab", 32) + "\n"
	for name, c := range map[string]struct {
		uid     int
		mode    os.FileMode
		dirMode os.FileMode
		ok      bool
	}{
		"root's, 0400":            {0, 0o400, 0o700, true},
		"the account's":           {65534, 0o400, 0o700, false},
		"writable by others":      {0, 0o602, 0o700, false},
		"in a group-writable dir": {0, 0o400, 0o770, false},
	} {
		dir := filepath.Join(t.TempDir(), "keys")
		os.Mkdir(dir, c.dirMode)
		os.Chmod(dir, c.dirMode)
		f := filepath.Join(dir, "00112233445566778899aabbccddeeff.key")
		os.WriteFile(f, []byte(key), 0o400)
		os.Chmod(f, c.mode)
		os.Chown(f, c.uid, c.uid)
		for _, p := range []string{dir, f} {
			_, err := ReadKeys(p)
			if c.ok && err != nil || !c.ok && (err == nil || !strings.Contains(err.Error(), "proves nothing")) {
				t.Errorf("%s, read as %s: %v", name, filepath.Base(p), err)
			}
		}
	}
	// A link in a root's key directory to a key elsewhere could be
	// repointed between the check and the read: refused.
	dir := filepath.Join(t.TempDir(), "keys")
	os.Mkdir(dir, 0o700)
	target := filepath.Join(t.TempDir(), "00112233445566778899aabbccddeeff.key")
	os.WriteFile(target, []byte(key), 0o400)
	os.Symlink(target, filepath.Join(dir, filepath.Base(target)))
	if _, err := ReadKeys(dir); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a key directory holding a symbolic link: %v, want a refusal", err)
	}
}

// An empty audit directory has no chain whose MACs were checked: it is
// not reported keyed, so nothing calls it intact.
func TestAnEmptyLogIsNotKeyed(t *testing.T) {
	rep, err := Verify(t.TempDir(), map[string]Key{}, nil)
	if err != nil || rep.Keyed || rep.Records != 0 {
		t.Errorf("an empty directory: %+v, %v; want no records and not keyed", rep, err)
	}
}
