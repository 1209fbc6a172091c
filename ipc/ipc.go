// Package ipc is the channel between the root loader and the unprivileged
// worker: a SOCK_SEQPACKET socketpair (one datagram per message, so a message
// can never be split or merged), carrying a closed set of typed messages with
// a length cap. File descriptors travel with SCM_RIGHTS and only on the
// message that expects them.
//
// The whole set, which is the table specs below (W: worker, L: loader):
//
//	message   from  payload                      permitted in      at most     why it exists
//	Hello     W     protocol version, whether    greeting, once    -           refuse a worker built for another protocol; a worker
//	                it has audit chain state                                   with no chain state gets a new chain's first key
//	Setup     L     next generation, a first     -                 -           the worker never creates maps, opens pins or sockets,
//	                key or none, fd names, one                                 or chooses its generation; the first key comes from
//	                fd per name                                                root, which keeps the auditor's copy
//	Applied   W     generation, set hash         applying, running 30/minute   the loader attaches only once a policy is live
//	Refused   W     why, up to 512 bytes         running           30/minute   a reload the worker refused, so that the loader can
//	                                                                           tell systemd the reload ended with the old policy
//	Alive     W     none                         running           30/minute   the loader tells systemd's watchdog only what the worker confirms
//	Reload    L     none                         -                 -           SIGHUP reaches the loader, which systemd signals
//	Event     L     kind, ifindex, count, text   -                 -           what the loader saw (restarts, links), for the audit log
//
// What the worker may send when is the loader's permit table, checked by a
// Monitor: Hello once; after the setup, an Applied carrying exactly the
// generation the Setup message named; then Applied with the next generation,
// Refused or Alive, each within its rate. Anything else, of any type, a wrong
// length or fds on a message that carries none is a protocol violation: the
// loader kills the worker and starts another.
package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

const (
	Version    = 4    // of the protocol; both ends must agree exactly
	MaxMessage = 4096 // bytes in a message, header included
	MaxFDs     = 16   // descriptors in a message
	MaxText    = 512  // bytes of text in an Event or a Refused
	headerLen  = 4    // type uint16, payload length uint16
)

// Type identifies a message.
type Type uint16

const (
	TypeHello   Type = 1
	TypeSetup   Type = 2
	TypeApplied Type = 3
	TypeAlive   Type = 4
	TypeReload  Type = 5
	TypeEvent   Type = 6
	TypeRefused Type = 7
)

// State is where the worker is in its conversation with the loader.
type State uint8

const (
	StateGreeting State = iota // nothing received yet
	StateApplying              // setup sent, no policy applied yet
	StateRunning               // a policy is live
)

// spec is one row of the message table.
type spec struct {
	name       string
	fromWorker bool
	payload    [2]int // least and most payload bytes
	fds        [2]int // least and most descriptors
	// Worker messages: the states that permit it, the state it leads
	// to, and how many may arrive in one rateWindow.
	in   []State
	next State
	rate int
}

// rateWindow is the span the rate column counts in.
const rateWindow = time.Minute

var specs = map[Type]spec{
	TypeHello:   {name: "hello", fromWorker: true, payload: [2]int{5, 5}, in: []State{StateGreeting}, next: StateApplying, rate: 1},
	TypeSetup:   {name: "setup", payload: [2]int{setupFixed + 1, MaxMessage - headerLen}, fds: [2]int{1, MaxFDs}},
	TypeApplied: {name: "applied", fromWorker: true, payload: [2]int{40, 40}, in: []State{StateApplying, StateRunning}, next: StateRunning, rate: 30},
	TypeRefused: {name: "refused", fromWorker: true, payload: [2]int{1, MaxText}, in: []State{StateRunning}, next: StateRunning, rate: 30},
	TypeAlive:   {name: "alive", fromWorker: true, in: []State{StateRunning}, next: StateRunning, rate: 30},
	TypeReload:  {name: "reload"},
	TypeEvent:   {name: "event", payload: [2]int{9, 9 + MaxText}},
}

func (t Type) String() string {
	if s, ok := specs[t]; ok {
		return s.name
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

// Message is one of the types above.
type Message interface {
	Type() Type
}

// Hello opens the conversation from the worker.
type Hello struct {
	Version uint32
	// ChainState says the worker found its audit chain state and goes on
	// from it; without, the loader hands it a new chain's first key.
	ChainState bool
}

// Setup follows Hello, always: what a worker starts with. Names and FDs
// pair up: the worker's maps, each under the name it must have, then
// FDListener and FDSyslog when configured.
type Setup struct {
	// Generation is what the worker's first Applied must carry.
	Generation uint64
	// Chain and Key start a new audit chain, the loader keeping the
	// auditor's copy of the key, when the worker has no chain state; a
	// zero Key: go on from the state.
	Chain [16]byte
	Key   [32]byte
	Names []string
	FDs   []int
}

// Descriptors of a Setup that are not maps.
const (
	FDSyslog   = "syslog"   // a datagram socket connected to syslog: the worker opens no unix socket
	FDListener = "listener" // the metrics socket systemd passed the service
)

// setupFixed is the part of a Setup's payload before the names.
const setupFixed = 8 + 16 + 32

// Take removes the descriptor named name from s and returns it, or -1.
func (s *Setup) Take(name string) int {
	i := slices.Index(s.Names, name)
	if i < 0 {
		return -1
	}
	fd := s.FDs[i]
	s.Names, s.FDs = slices.Delete(s.Names, i, i+1), slices.Delete(s.FDs, i, i+1)
	return fd
}

// Applied tells the loader a policy set is live in the maps.
type Applied struct {
	Generation uint64
	SetHash    [32]byte
}

// Refused tells the loader a reload was refused and the policy in force
// stays.
type Refused struct {
	Why string
}

// Alive says the worker's loops still run.
type Alive struct{}

// Reload asks the worker to read its policies again.
type Reload struct{}

// Event kinds.
const (
	EventWorkerRestarted uint8 = 1 // Count: restarts so far; Text: why the last worker ended
	EventLinkAttached    uint8 = 2 // Ifindex; Text: the interface; Count 1 when telling a new worker what is attached, 0 for a change
	EventLinkDetached    uint8 = 3
)

// Event is something the loader saw that belongs in the audit log.
type Event struct {
	Kind    uint8
	Ifindex uint32
	Count   uint32
	Text    string
}

func (Hello) Type() Type   { return TypeHello }
func (Setup) Type() Type   { return TypeSetup }
func (Applied) Type() Type { return TypeApplied }
func (Refused) Type() Type { return TypeRefused }
func (Alive) Type() Type   { return TypeAlive }
func (Reload) Type() Type  { return TypeReload }
func (Event) Type() Type   { return TypeEvent }

// Conn is one end of the channel.
type Conn struct {
	c *socket.Conn
}

// Pair creates a connected pair: the loader's end, and the worker's end as a
// file to pass to the child (it is close-on-exec; exec.Cmd.ExtraFiles dups it).
func Pair() (*Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create socketpair: %w", err)
	}
	c, err := socket.New(fds[0], "ipc-loader")
	if err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("wrap loader end: %w", err)
	}
	return &Conn{c: c}, os.NewFile(uintptr(fds[1]), "ipc-worker"), nil
}

// FromFD wraps an inherited descriptor, after checking that it is a
// SOCK_SEQPACKET unix socket.
func FromFD(fd int) (*Conn, error) {
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	dom, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err := errors.Join(err1, err2); err != nil || typ != unix.SOCK_SEQPACKET || dom != unix.AF_UNIX {
		return nil, fmt.Errorf("fd %d is not a SOCK_SEQPACKET unix socket (%v)", fd, err)
	}
	unix.CloseOnExec(fd)
	c, err := socket.New(fd, "ipc-worker")
	if err != nil {
		return nil, fmt.Errorf("wrap fd %d: %w", fd, err)
	}
	return &Conn{c: c}, nil
}

// Close closes this end.
func (c *Conn) Close() error { return c.c.Close() }

// Send writes one message.
func (c *Conn) Send(ctx context.Context, m Message) error {
	payload, fds, err := encode(m)
	if err != nil {
		return err
	}
	if err := check(m.Type(), len(payload), len(fds)); err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	buf := binary.LittleEndian.AppendUint16(nil, uint16(m.Type()))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(payload)))
	buf = append(buf, payload...)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if _, err := c.c.Sendmsg(ctx, buf, oob, nil, 0); err != nil {
		return fmt.Errorf("send %s: %w", m.Type(), err)
	}
	return nil
}

// Recv reads one message. Any descriptor received with a message that is
// then refused is closed.
func (c *Conn) Recv(ctx context.Context) (Message, error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(MaxFDs*4))
	n, oobn, flags, _, err := c.c.Recvmsg(ctx, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	fds, ferr := parseRights(oob[:oobn])
	m, err := func() (Message, error) {
		switch {
		case ferr != nil:
			return nil, ferr
		case n == 0:
			return nil, errors.New("receive: peer closed the channel")
		case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxMessage:
			return nil, fmt.Errorf("receive: message over %d bytes or %d fds", MaxMessage, MaxFDs)
		}
		return decode(buf[:n], fds)
	}()
	if err != nil {
		closeAll(fds)
		return nil, err
	}
	return m, nil
}

// parseRights takes the descriptors out of a control message the kernel
// built; anything but SCM_RIGHTS is refused and every descriptor closed.
func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	var fds []int
	for _, m := range msgs {
		rights, rerr := unix.ParseUnixRights(&m)
		if rerr != nil {
			err = fmt.Errorf("level %d type %d, not SCM_RIGHTS", m.Header.Level, m.Header.Type)
		}
		fds = append(fds, rights...)
	}
	if err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// check holds a message's sizes against its row of specs.
func check(t Type, payload, fds int) error {
	s, ok := specs[t]
	switch {
	case !ok:
		return fmt.Errorf("unknown message type %d", uint16(t))
	case payload < s.payload[0] || payload > s.payload[1]:
		return fmt.Errorf("%s: %d payload bytes, want %d to %d", t, payload, s.payload[0], s.payload[1])
	case fds < s.fds[0] || fds > s.fds[1]:
		return fmt.Errorf("%s: %d fds, want %d to %d", t, fds, s.fds[0], s.fds[1])
	}
	return nil
}

func encode(m Message) ([]byte, []int, error) {
	switch m := m.(type) {
	case Hello:
		flag := byte(0)
		if m.ChainState {
			flag = 1
		}
		return append(binary.LittleEndian.AppendUint32(nil, m.Version), flag), nil, nil
	case Applied:
		return append(binary.LittleEndian.AppendUint64(nil, m.Generation), m.SetHash[:]...), nil, nil
	case Refused:
		return []byte(m.Why), nil, nil
	case Alive, Reload:
		return nil, nil, nil
	case Event:
		b := binary.LittleEndian.AppendUint32([]byte{m.Kind}, m.Ifindex)
		b = binary.LittleEndian.AppendUint32(b, m.Count)
		return append(b, m.Text...), nil, nil
	case Setup:
		if len(m.Names) != len(m.FDs) || slices.ContainsFunc(m.Names, func(n string) bool { return n == "" || strings.ContainsRune(n, 0) }) {
			return nil, nil, fmt.Errorf("encode setup: %d names for %d fds, none empty or holding NUL", len(m.Names), len(m.FDs))
		}
		b := append(append(binary.LittleEndian.AppendUint64(nil, m.Generation), m.Chain[:]...), m.Key[:]...)
		return append(b, strings.Join(m.Names, "\x00")...), m.FDs, nil
	}
	return nil, nil, fmt.Errorf("encode: unknown message %T", m)
}

func decode(b []byte, fds []int) (Message, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("decode: %d-byte message is shorter than its header", len(b))
	}
	t := Type(binary.LittleEndian.Uint16(b[0:]))
	p := b[headerLen:]
	if plen := int(binary.LittleEndian.Uint16(b[2:])); plen != len(p) {
		return nil, fmt.Errorf("decode %s: header says %d payload bytes, got %d", t, plen, len(p))
	}
	if err := check(t, len(p), len(fds)); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	switch t {
	case TypeHello:
		if p[4] > 1 {
			return nil, fmt.Errorf("decode hello: chain state flag %d", p[4])
		}
		return Hello{Version: binary.LittleEndian.Uint32(p), ChainState: p[4] == 1}, nil
	case TypeApplied:
		a := Applied{Generation: binary.LittleEndian.Uint64(p)}
		copy(a.SetHash[:], p[8:])
		return a, nil
	case TypeRefused:
		return Refused{Why: string(p)}, nil
	case TypeAlive:
		return Alive{}, nil
	case TypeReload:
		return Reload{}, nil
	case TypeEvent:
		return Event{Kind: p[0], Ifindex: binary.LittleEndian.Uint32(p[1:]), Count: binary.LittleEndian.Uint32(p[5:]), Text: string(p[9:])}, nil
	case TypeSetup:
		m := Setup{Generation: binary.LittleEndian.Uint64(p), Names: strings.Split(string(p[setupFixed:]), "\x00"), FDs: fds}
		copy(m.Chain[:], p[8:])
		copy(m.Key[:], p[24:])
		if len(m.Names) != len(fds) {
			return nil, fmt.Errorf("decode setup: %d names for %d fds", len(m.Names), len(fds))
		}
		for i, n := range m.Names {
			if n == "" || slices.Contains(m.Names[:i], n) {
				return nil, fmt.Errorf("decode setup: name %q empty or repeated", n)
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("decode: no decoder for %s", t)
}

// Expect receives one message and requires it to be of type t; anything else
// is refused, and any descriptors it carried are closed.
func (c *Conn) Expect(ctx context.Context, t Type) (Message, error) {
	m, err := c.Recv(ctx)
	if err != nil {
		return nil, err
	}
	if m.Type() != t {
		CloseFDs(m)
		return nil, fmt.Errorf("unpermitted message %s, expected %s", m.Type(), t)
	}
	return m, nil
}

// CloseFDs closes the descriptors a message carries, for a message that is
// refused.
func CloseFDs(m Message) {
	if m, ok := m.(Setup); ok {
		closeAll(m.FDs)
	}
}

// Permitted reports whether the worker may send t in state s.
func Permitted(s State, t Type) bool {
	row, ok := specs[t]
	return ok && row.fromWorker && slices.Contains(row.in, s)
}

// Monitor checks the worker's messages against the permit table and the
// rules a single message cannot show: the protocol version, the exact
// generation, the rates.
type Monitor struct {
	State State
	// Next is the generation the worker's next Applied must carry; the
	// loader sets it from its own count, never from the worker.
	Next   uint64
	window time.Time
	counts map[Type]int
}

// Accept advances the monitor with m, received at now, or says why m is a
// violation. A refused message leaves the monitor as it was.
func (mon *Monitor) Accept(m Message, now time.Time) error {
	t := m.Type()
	if !Permitted(mon.State, t) {
		return fmt.Errorf("%s not permitted in state %d", t, mon.State)
	}
	if now.Sub(mon.window) >= rateWindow || now.Before(mon.window) {
		mon.window, mon.counts = now, map[Type]int{}
	}
	if mon.counts[t] >= specs[t].rate {
		return fmt.Errorf("more than %d %s messages within %v", specs[t].rate, t, rateWindow)
	}
	switch m := m.(type) {
	case Hello:
		if m.Version != Version {
			return fmt.Errorf("worker speaks protocol %d, loader %d: binary mismatch", m.Version, Version)
		}
	case Applied:
		if m.Generation != mon.Next {
			return fmt.Errorf("applied generation %d, the loader assigned %d", m.Generation, mon.Next)
		}
		mon.Next++
	}
	mon.counts[t]++
	mon.State = specs[t].next
	return nil
}
