package sandbox

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// The tests below run the filter libseccomp compiled, instruction by
// instruction, instead of trusting its pseudo-code listing: that is how the
// masked bpf(2) command blocks get checked against every value of interest
// without installing anything.

// Return values of a seccomp program (linux/seccomp.h).
const (
	retKillProcess = 0x80000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retAllow       = 0x7fff0000
	retDataMask    = 0x0000ffff
)

// Audit architectures (linux/audit.h).
const (
	auditArchX86_64 = 0xc000003e
	auditArchI386   = 0x40000003
	x32SyscallBit   = 0x40000000
)

type sockFilter struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// exportFilter compiles p and returns the classic BPF program libseccomp
// would load. ExportBPF writes to a file; libseccomp 2.5 has no memory
// export.
func exportFilter(t *testing.T, p Policy) ([]sockFilter, Report) {
	t.Helper()
	f, report, err := build(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	err = f.ExportBPF(w)
	w.Close()
	raw := <-done
	if err != nil {
		t.Fatalf("export filter: %v", err)
	}
	if len(raw)%8 != 0 || len(raw) == 0 {
		t.Fatalf("exported filter is %d bytes, not a whole number of instructions", len(raw))
	}
	prog := make([]sockFilter, len(raw)/8)
	for i := range prog {
		b := raw[i*8:]
		prog[i] = sockFilter{
			code: binary.NativeEndian.Uint16(b),
			jt:   b[2],
			jf:   b[3],
			k:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return prog, report
}

// seccompData lays out struct seccomp_data.
func seccompData(arch uint32, nr int32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.NativeEndian.PutUint32(b[0:], uint32(nr))
	binary.NativeEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// BPF opcode fields (linux/bpf_common.h).
const (
	bpfLD, bpfLDX, bpfST, bpfSTX, bpfALU, bpfJMP, bpfRET, bpfMISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
)

// run interprets the subset of classic BPF the kernel accepts in a seccomp
// filter and returns the program's verdict. It fails on anything else.
func run(prog []sockFilter, data []byte) (uint32, error) {
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		src := func() uint32 {
			if in.code&0x08 != 0 { // BPF_X
				return x
			}
			return in.k
		}
		switch in.code & 0x07 {
		case bpfLD, bpfLDX:
			var v uint32
			switch in.code & 0xe0 {
			case 0x20: // BPF_ABS, 32-bit only in seccomp
				if in.code&0x18 != 0 || in.k%4 != 0 || int(in.k)+4 > len(data) {
					return 0, fmt.Errorf("pc %d: bad load %#x k=%d", pc, in.code, in.k)
				}
				v = binary.NativeEndian.Uint32(data[in.k:])
			case 0x00: // BPF_IMM
				v = in.k
			case 0x60: // BPF_MEM
				v = mem[in.k%16]
			case 0x80: // BPF_LEN
				v = uint32(len(data))
			default:
				return 0, fmt.Errorf("pc %d: unsupported load %#x", pc, in.code)
			}
			if in.code&0x07 == bpfLD {
				a = v
			} else {
				x = v
			}
		case bpfST:
			mem[in.k%16] = a
		case bpfSTX:
			mem[in.k%16] = x
		case bpfALU:
			s := src()
			switch in.code & 0xf0 {
			case 0x00:
				a += s
			case 0x10:
				a -= s
			case 0x20:
				a *= s
			case 0x30:
				if s == 0 {
					return 0, fmt.Errorf("pc %d: division by zero", pc)
				}
				a /= s
			case 0x40:
				a |= s
			case 0x50:
				a &= s
			case 0x60:
				a <<= s
			case 0x70:
				a >>= s
			case 0x80:
				a = -a
			default:
				return 0, fmt.Errorf("pc %d: unsupported alu %#x", pc, in.code)
			}
		case bpfJMP:
			if in.code&0xf0 == 0x00 { // BPF_JA
				pc += int(in.k)
				continue
			}
			var taken bool
			s := src()
			switch in.code & 0xf0 {
			case 0x10:
				taken = a == s
			case 0x20:
				taken = a > s
			case 0x30:
				taken = a >= s
			case 0x40:
				taken = a&s != 0
			default:
				return 0, fmt.Errorf("pc %d: unsupported jump %#x", pc, in.code)
			}
			if taken {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		case bpfRET:
			if in.code&0x18 == 0x10 { // BPF_A
				return a, nil
			}
			return in.k, nil
		case bpfMISC:
			if in.code&0xf8 == 0x00 { // TAX
				x = a
			} else {
				a = x
			}
		}
	}
	return 0, fmt.Errorf("fell off the end of the program")
}

func verdictString(v uint32) string {
	switch {
	case v == retAllow:
		return "ALLOW"
	case v == retKillProcess:
		return "KILL_PROCESS"
	case v == retTrap:
		return "TRAP"
	case v&^retDataMask == retErrno:
		return fmt.Sprintf("ERRNO(%d)", v&retDataMask)
	}
	return fmt.Sprintf("%#08x", v)
}

// want is the seccomp return value the filter should give a call p
// answers with action.
func want(action Action, errno unix.Errno) uint32 {
	switch action {
	case Allow:
		return retAllow
	case Errno:
		return retErrno | uint32(errno)
	}
	return retTrap
}

func mustSyscall(t *testing.T, name string) int32 {
	t.Helper()
	nr, err := seccomp.GetSyscallFromName(name)
	if err != nil {
		t.Fatalf("resolve %s: %v", name, err)
	}
	return int32(nr)
}
