package ipc

import (
	"context"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, f, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := FromFD(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRoundTrip(t *testing.T) {
	a, b := pair(t)
	want := Applied{Generation: 7}
	want.SetHash[3] = 9
	if err := b.Send(ctx(t), want); err != nil {
		t.Fatal(err)
	}
	got, err := a.Expect(ctx(t), TypeApplied)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestSetupCarriesDescriptorsAndTheKey(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	sent := Setup{Generation: 3, Chain: [16]byte{1}, Key: [32]byte{2, 31: 3}, Names: []string{"addr4", FDSyslog, "ports"}, FDs: []int{int(r.Fd()), int(w.Fd()), int(r.Fd())}}
	if err := a.Send(ctx(t), sent); err != nil {
		t.Fatal(err)
	}
	m, err := b.Expect(ctx(t), TypeSetup)
	if err != nil {
		t.Fatal(err)
	}
	mm := m.(Setup)
	if mm.Generation != 3 || mm.Chain != sent.Chain || mm.Key != sent.Key || strings.Join(mm.Names, ",") != "addr4,syslog,ports" || len(mm.FDs) != 3 {
		t.Fatalf("got %+v", mm)
	}
	syslog := mm.Take(FDSyslog)
	if syslog < 0 || mm.Take(FDSyslog) != -1 || mm.Take(FDListener) != -1 || strings.Join(mm.Names, ",") != "addr4,ports" || len(mm.FDs) != 2 {
		t.Fatalf("after Take: %d, %+v", syslog, mm)
	}
	for _, fd := range append(mm.FDs, syslog) {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC == 0 {
			t.Errorf("received fd %d not close-on-exec (flags %d, err %v)", fd, flags, err)
		}
		unix.Close(fd)
	}
}

// raw sends bytes (and fds) that Send would never produce.
func raw(t *testing.T, c *Conn, b []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, err := c.c.Sendmsg(ctx(t), b, oob, nil, 0); err != nil {
		t.Fatal(err)
	}
}

func header(typ Type, n int) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(typ))
	return binary.LittleEndian.AppendUint16(b, uint16(n))
}

func TestMalformedMessagesAreRefused(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	cases := []struct {
		name string
		msg  []byte
		fds  []int
		want string
	}{
		{"short header", []byte{1}, nil, "shorter than its header"},
		{"unknown type", header(99, 0), nil, "unknown message type"},
		{"length mismatch", append(header(TypeHello, 8), 1, 0, 0, 0), nil, "header says 8"},
		{"hello wrong size", append(header(TypeHello, 2), 1, 0), nil, "want 5"},
		{"fds on hello", append(header(TypeHello, 5), 1, 0, 0, 0, 0), []int{int(r.Fd())}, "hello: 1 fds, want 0 to 0"},
		{"oversized", append(header(TypeSetup, 5000), make([]byte, 5000)...), nil, "over 4096"},
		{"setup without fds", append(header(TypeSetup, 61), append(make([]byte, 56), "addr4"...)...), nil, "setup: 0 fds, want 1 to 16"},
		{"setup without names", append(header(TypeSetup, 56), make([]byte, 56)...), []int{int(r.Fd())}, "setup: 56 payload bytes, want 57"},
		{"setup names and fds disagree", append(header(TypeSetup, 61), append(make([]byte, 56), "a\x00b\x00c"...)...), []int{int(r.Fd())}, "3 names for 1 fds"},
		{"setup name repeated", append(header(TypeSetup, 59), append(make([]byte, 56), "a\x00a"...)...), []int{int(r.Fd()), int(w.Fd())}, `name "a" empty or repeated`},
		{"setup name empty", append(header(TypeSetup, 58), append(make([]byte, 56), "a\x00"...)...), []int{int(r.Fd()), int(w.Fd())}, `name "" empty or repeated`},
		{"refused without text", header(TypeRefused, 0), nil, "want 1 to 512"},
		{"event text too long", append(header(TypeEvent, 9+513), make([]byte, 9+513)...), nil, "want 9 to 521"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pair(t)
			raw(t, a, tc.msg, tc.fds...)
			_, err := b.Recv(ctx(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExpectRefusesOtherTypes(t *testing.T) {
	a, b := pair(t)
	if err := b.Send(ctx(t), Hello{Version: Version}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expect(ctx(t), TypeApplied); err == nil || !strings.Contains(err.Error(), "unpermitted") {
		t.Fatalf("err = %v", err)
	}
}

func TestPeerCloseIsAnError(t *testing.T) {
	a, b := pair(t)
	a.Close()
	if _, err := b.Recv(ctx(t)); err == nil {
		t.Fatal("receive after peer close succeeded")
	}
}

func TestFromFDRefusesOtherDescriptors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if _, err := FromFD(int(r.Fd())); err == nil {
		t.Fatal("a pipe was accepted as the IPC channel")
	}
}

func TestRoundTripEveryType(t *testing.T) {
	a, b := pair(t)
	for _, m := range []Message{
		Hello{Version: Version}, Hello{Version: Version, ChainState: true}, Applied{Generation: 1<<63 + 5},
		Refused{Why: "policy.yaml: bad"}, Alive{}, Reload{},
		Event{Kind: EventLinkAttached, Ifindex: 7, Count: 2, Text: strings.Repeat("x", MaxText)},
	} {
		if err := a.Send(ctx(t), m); err != nil {
			t.Fatalf("send %s: %v", m.Type(), err)
		}
		got, err := b.Recv(ctx(t))
		if err != nil {
			t.Fatalf("receive %s: %v", m.Type(), err)
		}
		if got != m {
			t.Errorf("got %+v, want %+v", got, m)
		}
	}
	if err := a.Send(ctx(t), Event{Text: strings.Repeat("x", MaxText+1)}); err == nil {
		t.Error("an event text over MaxText was sent")
	}
}

// accept feeds a monitor messages at one instant, failing on refusal.
func accept(t *testing.T, mon *Monitor, now time.Time, ms ...Message) {
	t.Helper()
	for _, m := range ms {
		if err := mon.Accept(m, now); err != nil {
			t.Fatalf("%s refused: %v", m.Type(), err)
		}
	}
}

func TestMonitorRequiresTheAssignedGeneration(t *testing.T) {
	now := time.Unix(1000, 0)
	mon := Monitor{Next: 5}
	accept(t, &mon, now, Hello{Version: Version})
	for _, g := range []uint64{4, 6, 1<<64 - 1, 0} {
		before := mon
		if err := mon.Accept(Applied{Generation: g}, now); err == nil || !strings.Contains(err.Error(), "assigned 5") {
			t.Errorf("applied %d: err = %v, want a refusal naming 5", g, err)
		}
		if mon.State != before.State || mon.Next != before.Next {
			t.Errorf("a refused applied moved the monitor to %+v", mon)
		}
	}
	accept(t, &mon, now, Applied{Generation: 5}, Applied{Generation: 6}, Alive{})
	if mon.Next != 7 || mon.State != StateRunning {
		t.Errorf("monitor %+v, want next 7, running", mon)
	}
}

func TestMonitorRefusesOutOfStateAndLoaderMessages(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		before []Message
		m      Message
	}{
		{nil, Alive{}},
		{nil, Applied{}},
		{nil, Hello{Version: Version + 1}},
		{[]Message{Hello{Version: Version}}, Hello{Version: Version}},
		{[]Message{Hello{Version: Version}}, Refused{Why: "x"}},
		{[]Message{Hello{Version: Version}}, Alive{}},
		{[]Message{Hello{Version: Version}, Applied{}}, Setup{}},
		{[]Message{Hello{Version: Version}, Applied{}}, Reload{}},
		{[]Message{Hello{Version: Version}, Applied{}}, Event{}},
	} {
		var mon Monitor
		accept(t, &mon, now, tc.before...)
		if err := mon.Accept(tc.m, now); err == nil {
			t.Errorf("after %v, %s was accepted", tc.before, tc.m.Type())
		}
	}
}

func TestMonitorLimitsRates(t *testing.T) {
	now := time.Unix(1000, 0)
	var mon Monitor
	accept(t, &mon, now, Hello{Version: Version}, Applied{})
	for i := range specs[TypeAlive].rate {
		if err := mon.Accept(Alive{}, now.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatalf("alive %d refused: %v", i, err)
		}
	}
	if err := mon.Accept(Alive{}, now.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "more than 30 alive") {
		t.Fatalf("alive over the rate: err = %v", err)
	}
	// Other types count apart, and a new window starts afresh.
	accept(t, &mon, now.Add(time.Second), Applied{Generation: 1})
	accept(t, &mon, now.Add(rateWindow), Alive{})
}
