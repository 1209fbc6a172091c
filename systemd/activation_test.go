package systemd

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// listenerChildEnv makes the test binary a process systemd started with
// one socket (fd 3), which takes it as the loader does.
const listenerChildEnv = "PCI_SEGMENT_TEST_LISTENER_CHILD"

func listenerChild() int {
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid())) // systemd sets the child's pid
	f, err := Listener()
	if err != nil {
		fmt.Println(err)
		return 2
	}
	fmt.Println("taken", f != nil)
	return 0
}

func TestMain(m *testing.M) {
	if os.Getenv(listenerChildEnv) != "" {
		os.Exit(listenerChild())
	}
	os.Exit(m.Run())
}

// Only a listening TCP socket is taken as the metrics socket; a unix
// listener, a UDP socket or a connected socket stops the start, naming
// what was expected.
func TestListenerWantsAListeningTCPSocket(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	unixL, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer unixL.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	conn, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	file := func(x interface{ File() (*os.File, error) }) *os.File {
		f, err := x.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	for _, tc := range []struct {
		name string
		f    *os.File
		ok   bool
	}{
		{"tcp listener", file(tcp.(*net.TCPListener)), true},
		{"unix listener", file(unixL.(*net.UnixListener)), false},
		{"udp socket", file(udp.(*net.UDPConn)), false},
		{"connected tcp", file(conn.(*net.TCPConn)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), listenerChildEnv+"=1", "LISTEN_FDS=1")
			cmd.ExtraFiles = []*os.File{tc.f}
			out, err := cmd.CombinedOutput()
			switch {
			case tc.ok && (err != nil || !strings.Contains(string(out), "taken true")):
				t.Errorf("refused: %v\n%s", err, out)
			case !tc.ok && (err == nil || !strings.Contains(string(out), "not a listening TCP socket")):
				t.Errorf("taken: %v\n%s", err, out)
			}
		})
	}
}
