package lab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// DefaultTimeout is the timeout DialTCP and UDPExchange use when given zero.
// On a veth an answer takes well under a millisecond, so this is only how
// long a test waits to conclude that a packet was dropped.
const DefaultTimeout = 2 * time.Second

// echoIdle bounds how long an echo connection may sit idle, so a client that
// vanishes does not pin a goroutine and a socket until the lab is removed.
const echoIdle = 30 * time.Second

var (
	// ErrTimeout is wrapped by the error of a dial or exchange that got no
	// answer in time: the packets were dropped somewhere.
	ErrTimeout = errors.New("timed out with no answer (dropped)")
	// ErrRefused is wrapped by the error of a dial answered by a TCP RST or
	// an exchange answered by ICMP port unreachable: the packets got
	// through, nothing listened.
	ErrRefused = errors.New("connection refused (answered, not dropped)")
)

// ListenTCP starts a TCP echo server on addr inside ns and returns its
// listener. An accept loop owned by the lab echoes every connection back, so
// Accept on the returned listener fails; use Addr (port 0 picks a free port)
// and Close. An IPv6 unspecified address listens on both families. The
// server is closed when the lab is removed, if not before.
func (l *Lab) ListenTCP(ns string, addr netip.AddrPort) (net.Listener, error) {
	network := "tcp6"
	switch {
	case addr.Addr().Is4():
		network = "tcp4"
	case addr.Addr() == netip.IPv6Unspecified():
		network = "tcp"
	}
	var ln net.Listener
	err := l.Do(ns, func() (err error) {
		ln, err = net.Listen(network, addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tcp echo on %s in %s: %w", addr, ns, err)
	}
	e := &echoListener{Listener: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	l.track(e)
	return e, nil
}

type echoListener struct {
	net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (e *echoListener) Accept() (net.Conn, error) {
	return nil, errors.New("lab: the echo server's own loop accepts on this listener")
}

func (e *echoListener) serve() {
	defer e.wg.Done()
	for {
		c, err := e.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: try again
			continue
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go func() {
			defer e.wg.Done()
			c.SetDeadline(time.Now().Add(echoIdle))
			io.Copy(c, c)
			c.Close()
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
		}()
	}
}

// Close stops the accept loop, closes every open connection and waits for
// their goroutines.
func (e *echoListener) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	err := e.Listener.Close()
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
	return err
}

// ServeUDPEcho starts a UDP echo server on addr inside ns: every datagram is
// sent back to its sender. Bind a specific address (not a wildcard), so the
// reply leaves from the address the request was sent to. Reading from the
// returned connection fails; use LocalAddr and Close. The server is closed
// when the lab is removed, if not before.
func (l *Lab) ServeUDPEcho(ns string, addr netip.AddrPort) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.Do(ns, func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("udp echo on %s in %s: %w", addr, ns, err)
	}
	e := &udpEcho{PacketConn: pc, done: make(chan struct{})}
	go e.serve()
	l.track(e)
	return e, nil
}

type udpEcho struct {
	net.PacketConn
	once sync.Once
	done chan struct{}
	err  error
}

func (e *udpEcho) ReadFrom([]byte) (int, net.Addr, error) {
	return 0, nil, errors.New("lab: the echo server's own loop reads this connection")
}

func (e *udpEcho) serve() {
	defer close(e.done)
	buf := make([]byte, 64<<10)
	for {
		n, from, err := e.PacketConn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ECONNREFUSED queued by an earlier reply
		}
		e.PacketConn.WriteTo(buf[:n], from)
	}
}

func (e *udpEcho) Close() error {
	e.once.Do(func() {
		e.err = e.PacketConn.Close()
		<-e.done
	})
	return e.err
}

// DialTCP connects from ns to remote, from local if it is valid (else the
// address the kernel picks), and completes one echo round trip, all within
// timeout (DefaultTimeout if zero). The error wraps ErrTimeout when nothing
// answered in time and ErrRefused when a RST answered.
func (l *Lab) DialTCP(ns string, local netip.Addr, remote netip.AddrPort, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	what := flow("tcp", ns, local, remote)
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	err := l.Do(ns, func() (err error) {
		d := net.Dialer{Deadline: deadline}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		conn, err = d.Dial("tcp", remote.String())
		return err
	})
	if err != nil {
		return classify(what, timeout, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := roundTrip(conn); err != nil {
		return classify(what, timeout, err)
	}
	return nil
}

// UDPExchange sends one datagram from ns to remote, from local if it is
// valid, and waits for the same bytes back, within timeout (DefaultTimeout
// if zero). The error wraps ErrTimeout when no reply came and ErrRefused
// when ICMP port unreachable came instead.
func (l *Lab) UDPExchange(ns string, local netip.Addr, remote netip.AddrPort, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	what := flow("udp", ns, local, remote)
	var laddr *net.UDPAddr
	if local.IsValid() {
		laddr = &net.UDPAddr{IP: local.AsSlice()}
	}
	var conn *net.UDPConn
	err := l.Do(ns, func() (err error) {
		conn, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(remote))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := roundTrip(conn); err != nil {
		return classify(what, timeout, err)
	}
	return nil
}

// roundTrip writes a random line and expects it back. The payload is small
// enough for one datagram and is read back in one Read for UDP.
func roundTrip(conn net.Conn) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	want := []byte("pci-segment lab " + hex.EncodeToString(b) + "\n")
	if _, err := conn.Write(want); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	got := make([]byte, len(want)+1)
	var n int
	var err error
	if _, ok := conn.(*net.UDPConn); ok {
		n, err = conn.Read(got)
	} else {
		n, err = io.ReadFull(conn, got[:len(want)])
	}
	if err != nil {
		return fmt.Errorf("receive echo: %w", err)
	}
	if !bytes.Equal(got[:n], want) {
		return fmt.Errorf("echo returned %q, sent %q", got[:n], want)
	}
	return nil
}

func flow(proto, ns string, local netip.Addr, remote netip.AddrPort) string {
	from := "(any)"
	if local.IsValid() {
		from = local.String()
	}
	return fmt.Sprintf("%s %s -> %s in %s", proto, from, remote, ns)
}

func classify(what string, timeout time.Duration, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: %w after %v: %w", what, ErrTimeout, timeout, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s: %w: %w", what, ErrRefused, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
