// Package ipc is the channel between the root loader and the unprivileged
// worker: a SOCK_SEQPACKET socketpair (one datagram per message, so a message
// can never be split or merged), carrying a closed set of typed messages with
// a length cap. File descriptors travel with SCM_RIGHTS and only on the
// message that expects them.
//
// The whole set (type, direction, payload, why it exists):
//
//	Hello     worker → loader  version                    refuse a worker built for another protocol
//	Maps      loader → worker  map names + fds            the worker never creates maps or opens pins
//	Applied   worker → loader  generation, set hash       the loader attaches only once a policy is live
//	Alive     worker → loader  (none)                     the loader tells systemd's watchdog only what the worker confirms
//	Reload    loader → worker  (none)                     SIGHUP reaches the loader, which systemd signals
//	Event     loader → worker  kind, ifindex, count, text what the loader saw (restarts, links), for the audit log
//	Listener  loader → worker  one listening socket fd    systemd's socket activation, handed through
//
// What the worker may send when is the loader's permit table (Permitted):
// before anything, Hello, once; after the maps, Applied; then Applied with a
// higher generation, or Alive. Anything else, of any type, a wrong length or
// fds on a message that carries none is a protocol violation: the loader
// kills the worker and starts another.
package ipc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdlayher/socket"
	"golang.org/x/sys/unix"
)

// Version of the protocol; both ends must agree exactly.
const Version = 1

// MaxMessage caps a message, header included.
const MaxMessage = 4096

// MaxFDs caps the descriptors one message may carry.
const MaxFDs = 16

// Type identifies a message.
type Type uint16

const (
	TypeHello    Type = 1
	TypeMaps     Type = 2
	TypeApplied  Type = 3
	TypeAlive    Type = 4
	TypeReload   Type = 5
	TypeEvent    Type = 6
	TypeListener Type = 7
)

var typeNames = map[Type]string{
	TypeHello: "hello", TypeMaps: "maps", TypeApplied: "applied", TypeAlive: "alive",
	TypeReload: "reload", TypeEvent: "event", TypeListener: "listener",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

// carriesFDs are the types whose messages hold descriptors.
var carriesFDs = map[Type]bool{TypeMaps: true, TypeListener: true}

const headerLen = 4 // type uint16, payload length uint16

// Message is one of the types above.
type Message interface {
	Type() Type
}

// Hello opens the conversation from the worker.
type Hello struct {
	Version uint32
}

// Maps hands the worker its map fds, each with the name it must have.
type Maps struct {
	Names []string
	FDs   []int
}

// Applied tells the loader a policy set is live in the maps.
type Applied struct {
	Generation uint64
	SetHash    [32]byte
}

// Alive says the worker's loops still run.
type Alive struct{}

// Reload asks the worker to read its policies again.
type Reload struct{}

// Event kinds.
const (
	EventWorkerRestarted uint8 = 1 // Count: restarts so far; Text: why the last worker ended
	EventLinkAttached    uint8 = 2 // Ifindex; Text: interface and direction
	EventLinkDetached    uint8 = 3
)

// MaxEventText caps Event.Text.
const MaxEventText = 512

// Event is something the loader saw that belongs in the audit log.
type Event struct {
	Kind    uint8
	Ifindex uint32
	Count   uint32
	Text    string
}

// Listener hands over a listening socket.
type Listener struct {
	FD int
}

func (Hello) Type() Type    { return TypeHello }
func (Maps) Type() Type     { return TypeMaps }
func (Applied) Type() Type  { return TypeApplied }
func (Alive) Type() Type    { return TypeAlive }
func (Reload) Type() Type   { return TypeReload }
func (Event) Type() Type    { return TypeEvent }
func (Listener) Type() Type { return TypeListener }

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
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("inspect fd %d: %w", fd, err)
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("fd %d is not a SOCK_SEQPACKET socket", fd)
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_UNIX {
		return nil, fmt.Errorf("fd %d is not a unix socket", fd)
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
	buf := make([]byte, headerLen+len(payload))
	binary.LittleEndian.PutUint16(buf[0:], uint16(m.Type()))
	binary.LittleEndian.PutUint16(buf[2:], uint16(len(payload)))
	copy(buf[headerLen:], payload)
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
		if ferr != nil {
			return nil, ferr
		}
		if n == 0 {
			return nil, errors.New("receive: peer closed the channel")
		}
		if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxMessage {
			return nil, fmt.Errorf("receive: message over %d bytes or %d fds", MaxMessage, MaxFDs)
		}
		return decode(buf[:n], fds)
	}()
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, err
	}
	return m, nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("parse control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		rights, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("unexpected control message level %d type %d", m.Header.Level, m.Header.Type)
			continue
		}
		fds = append(fds, rights...)
	}
	if bad != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, bad
	}
	return fds, nil
}

func encode(m Message) ([]byte, []int, error) {
	switch m := m.(type) {
	case Hello:
		return binary.LittleEndian.AppendUint32(nil, m.Version), nil, nil
	case Applied:
		b := binary.LittleEndian.AppendUint64(nil, m.Generation)
		return append(b, m.SetHash[:]...), nil, nil
	case Alive, Reload:
		return nil, nil, nil
	case Event:
		if len(m.Text) > MaxEventText {
			return nil, nil, fmt.Errorf("encode event: text of %d bytes exceeds %d", len(m.Text), MaxEventText)
		}
		b := []byte{m.Kind}
		b = binary.LittleEndian.AppendUint32(b, m.Ifindex)
		b = binary.LittleEndian.AppendUint32(b, m.Count)
		return append(b, m.Text...), nil, nil
	case Listener:
		return nil, []int{m.FD}, nil
	case Maps:
		if len(m.Names) != len(m.FDs) || len(m.FDs) == 0 || len(m.FDs) > MaxFDs {
			return nil, nil, fmt.Errorf("encode maps: %d names for %d fds (1..%d)", len(m.Names), len(m.FDs), MaxFDs)
		}
		for _, n := range m.Names {
			if n == "" || strings.ContainsRune(n, 0) {
				return nil, nil, fmt.Errorf("encode maps: bad map name %q", n)
			}
		}
		p := []byte(strings.Join(m.Names, "\x00"))
		if headerLen+len(p) > MaxMessage {
			return nil, nil, fmt.Errorf("encode maps: names exceed %d bytes", MaxMessage)
		}
		return p, m.FDs, nil
	}
	return nil, nil, fmt.Errorf("encode: unknown message %T", m)
}

func decode(b []byte, fds []int) (Message, error) {
	if len(b) < headerLen {
		return nil, fmt.Errorf("decode: %d-byte message is shorter than its header", len(b))
	}
	t := Type(binary.LittleEndian.Uint16(b[0:]))
	plen := int(binary.LittleEndian.Uint16(b[2:]))
	p := b[headerLen:]
	if plen != len(p) {
		return nil, fmt.Errorf("decode %s: header says %d payload bytes, got %d", t, plen, len(p))
	}
	if !carriesFDs[t] && len(fds) > 0 {
		return nil, fmt.Errorf("decode %s: carries %d unexpected fds", t, len(fds))
	}
	switch t {
	case TypeHello:
		if len(p) != 4 {
			return nil, fmt.Errorf("decode hello: %d payload bytes, want 4", len(p))
		}
		return Hello{Version: binary.LittleEndian.Uint32(p)}, nil
	case TypeApplied:
		if len(p) != 8+32 {
			return nil, fmt.Errorf("decode applied: %d payload bytes, want 40", len(p))
		}
		a := Applied{Generation: binary.LittleEndian.Uint64(p)}
		copy(a.SetHash[:], p[8:])
		return a, nil
	case TypeAlive, TypeReload:
		if len(p) != 0 {
			return nil, fmt.Errorf("decode %s: %d payload bytes, want none", t, len(p))
		}
		if t == TypeAlive {
			return Alive{}, nil
		}
		return Reload{}, nil
	case TypeEvent:
		if len(p) < 9 || len(p) > 9+MaxEventText {
			return nil, fmt.Errorf("decode event: %d payload bytes, want 9 to %d", len(p), 9+MaxEventText)
		}
		return Event{Kind: p[0], Ifindex: binary.LittleEndian.Uint32(p[1:]), Count: binary.LittleEndian.Uint32(p[5:]), Text: string(p[9:])}, nil
	case TypeListener:
		if len(p) != 0 || len(fds) != 1 {
			return nil, fmt.Errorf("decode listener: %d payload bytes and %d fds, want none and 1", len(p), len(fds))
		}
		return Listener{FD: fds[0]}, nil
	case TypeMaps:
		names := strings.Split(string(p), "\x00")
		if len(p) == 0 || len(names) != len(fds) {
			return nil, fmt.Errorf("decode maps: %d names for %d fds", len(names), len(fds))
		}
		return Maps{Names: names, FDs: fds}, nil
	}
	return nil, fmt.Errorf("decode: unknown message type %d", uint16(t))
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
	switch m := m.(type) {
	case Maps:
		for _, fd := range m.FDs {
			unix.Close(fd)
		}
	case Listener:
		unix.Close(m.FD)
	}
}

// State is where the worker is in its conversation with the loader.
type State uint8

const (
	StateGreeting State = iota // nothing received yet
	StateApplying              // maps sent, no policy applied yet
	StateRunning               // a policy is live
)

// Permitted is the loader's permit table: which message from the worker is
// allowed in which state, and the state it leads to. A message not in the
// row of the current state is a violation.
var Permitted = map[State]map[Type]State{
	StateGreeting: {TypeHello: StateApplying},
	StateApplying: {TypeApplied: StateRunning},
	StateRunning:  {TypeApplied: StateRunning, TypeAlive: StateRunning},
}

// Monitor checks the worker's messages against Permitted and the rules a
// single message cannot show (the protocol version; generations that only
// grow).
type Monitor struct {
	State      State
	Generation uint64
}

// Accept advances the monitor with m, or says why m is a violation.
func (mon *Monitor) Accept(m Message) error {
	next, ok := Permitted[mon.State][m.Type()]
	if !ok {
		return fmt.Errorf("%s not permitted in state %d", m.Type(), mon.State)
	}
	switch m := m.(type) {
	case Hello:
		if m.Version != Version {
			return fmt.Errorf("worker speaks protocol %d, loader %d: binary mismatch", m.Version, Version)
		}
	case Applied:
		if m.Generation <= mon.Generation {
			return fmt.Errorf("applied generation %d does not follow %d", m.Generation, mon.Generation)
		}
		mon.Generation = m.Generation
	}
	mon.State = next
	return nil
}
