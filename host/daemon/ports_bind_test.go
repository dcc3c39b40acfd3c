package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
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

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFixedForwardAndRetry: hostd's own forward (the registry's API) binds its host port,
// loopback even with portBindAddress 0.0.0.0, and the guest's listener entry for the same
// guest port is left to it; a forward whose host port is taken is retried without a new
// list, and becomes active once the port is free.
func TestFixedForwardAndRetry(t *testing.T) {
	hostPort, taken := freePort(t), freePort(t)
	m := newPortManager(t.Context(), nil, true, slog.New(slog.DiscardHandler), func(string, error) {})
	m.retryEvery = 50 * time.Millisecond
	m.fixed = []fixedForward{{Guest: proto.Port{Proto: "tcp", GuestIP: "127.0.0.1", Port: proto.RegistryPort, Source: proto.PortSourceRegistry}, HostPort: hostPort}}
	holder, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", taken))
	if err != nil {
		t.Fatal(err)
	}
	m.sync([]proto.Port{
		{Proto: "tcp", GuestIP: "0.0.0.0", Port: proto.RegistryPort, Source: proto.PortSourceListener},
		{Proto: "tcp", GuestIP: "0.0.0.0", Port: taken, Source: proto.PortSourceContainer},
	})
	defer m.closeAll()
	state := func() map[int]api.PortForward {
		out := map[int]api.PortForward{}
		for _, f := range m.list() {
			out[f.HostPort] = f
		}
		return out
	}
	st := state()
	if len(st) != 2 {
		t.Fatalf("forwards %+v, want the registry's and the container's", st)
	}
	if r := st[hostPort]; r.State != "active" || r.HostIP != "127.0.0.1" || r.GuestPort != proto.RegistryPort || r.Source != proto.PortSourceRegistry {
		t.Fatalf("registry forward %+v", r)
	}
	if c := st[taken]; c.State != "failed" {
		t.Fatalf("forward on a taken port %+v", c)
	}
	holder.Close()
	deadline := time.Now().Add(10 * time.Second)
	for state()[taken].State != "active" {
		if time.Now().After(deadline) {
			t.Fatalf("the freed port was not retried: %+v", state()[taken])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
