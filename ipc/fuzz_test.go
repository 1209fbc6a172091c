package ipc

import (
	"encoding/binary"
	"testing"
)

// FuzzLoaderDecode feeds the loader's decoder and permit table what a
// compromised worker could send: a sequence of datagrams, each possibly
// claiming descriptors. It must never panic, hang or allocate by an
// unchecked length, and a monitor must only move along Permitted.
func FuzzLoaderDecode(f *testing.F) {
	hello := binary.LittleEndian.AppendUint32([]byte{1, 0, 4, 0}, Version)
	applied := append(binary.LittleEndian.AppendUint64([]byte{3, 0, 40, 0}, 7), make([]byte, 32)...)
	alive := []byte{4, 0, 0, 0}
	for _, seed := range [][]byte{
		frame(hello, 0), frame(hello, 0, applied, 0, alive, 0),
		frame(applied, 0), frame(hello, 0, hello, 0), frame(alive, 1),
		frame([]byte{99, 0, 0, 0}, 0), frame([]byte{6, 0, 9, 0, 1, 2, 0, 0, 0, 3, 0, 0, 0}, 0),
		frame([]byte{2, 0, 5, 0, 'a', 'd', 'd', 'r', '4'}, 1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var mon Monitor
		for len(data) >= 3 {
			n := int(binary.LittleEndian.Uint16(data))
			nfds := int(data[2] % (MaxFDs + 2))
			data = data[3:]
			if n > len(data) {
				n = len(data)
			}
			msg := data[:n]
			data = data[n:]
			fds := make([]int, nfds)
			for i := range fds {
				fds[i] = -1 // never a real descriptor: CloseFDs on -1 is harmless
			}
			before := mon.State
			m, err := decode(msg, fds)
			if err != nil {
				continue
			}
			if err := mon.Accept(m); err != nil {
				if mon.State != before {
					t.Fatalf("a refused %s moved the monitor from %d to %d", m.Type(), before, mon.State)
				}
				return // the loader kills the worker here
			}
			if _, ok := Permitted[before][m.Type()]; !ok {
				t.Fatalf("%s accepted in state %d, which does not permit it", m.Type(), before)
			}
		}
	})
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
