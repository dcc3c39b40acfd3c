package daemon

import (
	"log/slog"
	"net"
	"testing"

	"github.com/berth-dev/berth/guestagent/proto"
)

// TestBindAllBothFamilies: with portBindAddress 0.0.0.0, docker's two bindings of
// `-p P:...` (0.0.0.0 and ::) both forward; the IPv6 one used to fail with "address already
// in use" against the IPv4 one.
func TestBindAllBothFamilies(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 here")
	} else {
		ln.Close()
	}
	// A free port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	m := newPortManager(t.Context(), nil, true, slog.New(slog.DiscardHandler), func(string, error) {})
	m.sync([]proto.Port{
		{Proto: "tcp", GuestIP: "0.0.0.0", Port: port, Source: "container"},
		{Proto: "tcp", GuestIP: "::", Port: port, Source: "container"},
		{Proto: "udp", GuestIP: "0.0.0.0", Port: port, Source: "container"},
		{Proto: "udp", GuestIP: "::", Port: port, Source: "container"},
	})
	defer m.closeAll()
	for _, f := range m.list() {
		if f.State != "active" {
			t.Errorf("%s %s:%d is %s: %s", f.Proto, f.HostIP, f.HostPort, f.State, f.Error)
		}
	}
	if len(m.list()) != 4 {
		t.Errorf("%d forwards, want 4", len(m.list()))
	}
}
