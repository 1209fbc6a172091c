package ipc

import (
	"context"
	"encoding/binary"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// seeds are datagrams as a compromised worker could send them, each with a
// number of descriptors.
func seeds() [][]byte {
	hello := append(binary.LittleEndian.AppendUint32([]byte{1, 0, 5, 0}, Version), 0)
	applied := append(binary.LittleEndian.AppendUint64([]byte{3, 0, 40, 0}, 0), make([]byte, 32)...)
	alive := []byte{4, 0, 0, 0}
	refused := []byte{7, 0, 3, 0, 'b', 'a', 'd'}
	setup := append(binary.LittleEndian.AppendUint64([]byte{2, 0, 61, 0}, 1), append(make([]byte, 48), "addr4"...)...)
	return [][]byte{
		frame(hello, 0), frame(hello, 0, applied, 0, alive, 0, refused, 0),
		frame(applied, 0), frame(hello, 0, hello, 0), frame(alive, 1),
		frame([]byte{99, 0, 0, 0}, 0), frame([]byte{6, 0, 9, 0, 1, 2, 0, 0, 0, 3, 0, 0, 0}, 0),
		frame(setup, 1), frame([]byte{7, 0, 0, 0}, 2), frame(hello, MaxFDs+1),
	}
}

// FuzzLoaderDecode feeds the loader's decoder and permit table what a
// compromised worker could send: a sequence of datagrams, each possibly
// claiming descriptors. It must never panic, hang or allocate by an
// unchecked length, and a monitor must only move along the permit table.
func FuzzLoaderDecode(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var mon Monitor
		now := time.Unix(0, 0)
		eachFrame(data, func(msg []byte, nfds int) bool {
			fds := make([]int, nfds)
			for i := range fds {
				fds[i] = -1 // never a real descriptor: closing -1 is harmless
			}
			m, err := decode(msg, fds)
			if err != nil {
				return true
			}
			before := mon
			if err := mon.Accept(m, now); err != nil {
				if mon.State != before.State || mon.Next != before.Next {
					t.Fatalf("a refused %s moved the monitor from %+v to %+v", m.Type(), before, mon)
				}
				return false // the loader kills the worker here
			}
			if !Permitted(before.State, m.Type()) {
				t.Fatalf("%s accepted in state %d, which does not permit it", m.Type(), before.State)
			}
			return true
		})
	})
}

// FuzzLoaderRecv sends the same datagrams over a real socketpair, with real
// descriptors (of /dev/null) in SCM_RIGHTS, so that the kernel builds the
// control messages and Recv parses them: every descriptor of a refused
// message must be closed, none may leak.
func FuzzLoaderRecv(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		f.Fatal(err)
	}
	defer null.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fds[0])
		rx, err := FromFD(fds[1])
		if err != nil {
			t.Fatal(err)
		}
		defer rx.Close()
		open := openFDs(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		eachFrame(data, func(msg []byte, nfds int) bool {
			var oob []byte
			if nfds > 0 {
				rights := make([]int, min(nfds, 250)) // the kernel's SCM_MAX_FD is 253
				for i := range rights {
					rights[i] = int(null.Fd())
				}
				oob = unix.UnixRights(rights...)
			}
			if err := unix.Sendmsg(fds[0], msg, oob, nil, 0); err != nil {
				return true // too large for the socket: nothing to receive
			}
			m, err := rx.Recv(ctx)
			if err == nil {
				CloseFDs(m)
			}
			if n := openFDs(t); n != open {
				t.Fatalf("%d descriptors open after a message with %d, %d before", n, nfds, open)
			}
			return true
		})
	})
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// eachFrame walks fuzz input laid out by frame, until fn returns false.
func eachFrame(data []byte, fn func(msg []byte, nfds int) bool) {
	for len(data) >= 3 {
		n := min(int(binary.LittleEndian.Uint16(data)), len(data)-3)
		nfds := int(data[2])
		msg := data[3 : 3+n]
		data = data[3+n:]
		if !fn(msg, nfds) {
			return
		}
	}
}

// frame lays out fuzz input: per message a 2-byte length, a descriptor
// count, then the message.
func frame(parts ...any) []byte {
	var out []byte
	for i := 0; i < len(parts); i += 2 {
		msg := parts[i].([]byte)
		out = binary.LittleEndian.AppendUint16(out, uint16(len(msg)))
		out = append(out, byte(parts[i+1].(int)))
		out = append(out, msg...)
	}
	return out
}
