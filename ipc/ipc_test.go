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

func TestMapsCarryDescriptors(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := a.Send(ctx(t), Maps{Names: []string{"addr4", "ports"}, FDs: []int{int(r.Fd()), int(w.Fd())}}); err != nil {
		t.Fatal(err)
	}
	m, err := b.Expect(ctx(t), TypeMaps)
	if err != nil {
		t.Fatal(err)
	}
	mm := m.(Maps)
	if strings.Join(mm.Names, ",") != "addr4,ports" || len(mm.FDs) != 2 {
		t.Fatalf("got %+v", mm)
	}
	for _, fd := range mm.FDs {
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
		{"hello wrong size", append(header(TypeHello, 2), 1, 0), nil, "want 4"},
		{"fds on hello", append(header(TypeHello, 4), 1, 0, 0, 0), []int{int(r.Fd())}, "unexpected fds"},
		{"oversized", append(header(TypeMaps, 5000), make([]byte, 5000)...), nil, "over 4096"},
		{"maps names without fds", append(header(TypeMaps, 5), []byte("addr4")...), nil, "1 names for 0 fds"},
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
