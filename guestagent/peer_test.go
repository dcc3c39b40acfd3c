package guestagent

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/prototest"
)

// addrConn is one end of a pipe that reports a chosen peer address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// chanListener hands out queued connections.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}
func (l *chanListener) Addr() net.Addr { return &vsock.Addr{ContextID: 3, Port: proto.VsockPort} }

// TestServeListenerRefusesGuestPeers: a connection from the guest itself (CID 1 through a
// loopback transport, or the guest's own CID, which is what a container's AF_VSOCK dial
// looks like) is closed before the agent reads a byte; the host's CID is served.
func TestServeListenerRefusesGuestPeers(t *testing.T) {
	srv := NewServer(ServeOptions{}, nil, slog.New(slog.DiscardHandler))
	ln := &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go srv.ServeListener(ctx, ln, FromHost)

	dial := func(cid uint32) (*yamux.Session, error) {
		a, b := prototest.UnixPair(t)
		ln.ch <- addrConn{Conn: b, remote: &vsock.Addr{ContextID: cid, Port: 40000}}
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := proto.HostHandshake(hctx, a); err != nil {
			a.Close()
			return nil, err
		}
		return yamux.Client(a, proto.YamuxConfig())
	}
	info := func(sess *yamux.Session) error {
		st, err := sess.OpenStream()
		if err != nil {
			return err
		}
		defer st.Close()
		st.SetDeadline(time.Now().Add(5 * time.Second))
		if err := proto.WriteJSONLine(st, proto.Request{Type: proto.TypeInfo}); err != nil {
			return err
		}
		var resp proto.Response
		return proto.ReadJSONLine(st, &resp)
	}
	for _, cid := range []uint32{vsock.Hypervisor, vsock.Local, 3, 42} {
		sess, err := dial(cid)
		if err != nil {
			continue // refused before the handshake: as it should be
		}
		if err := info(sess); err == nil {
			t.Errorf("peer CID %d got an answer from the agent", cid)
		}
		sess.Close()
	}
	sess, err := dial(vsock.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := info(sess); err != nil {
		t.Fatalf("the host (CID 2) was not served: %v", err)
	}
}

func TestFromHost(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want bool
	}{
		{&vsock.Addr{ContextID: vsock.Host, Port: 1}, true},
		{&vsock.Addr{ContextID: vsock.Local, Port: 1}, false},
		{&vsock.Addr{ContextID: vsock.Hypervisor, Port: 1}, false},
		{&vsock.Addr{ContextID: 3, Port: 1}, false},
		{&net.UnixAddr{Name: "x"}, false},
		{nil, false},
	} {
		if got := FromHost(tc.addr); got != tc.want {
			t.Errorf("FromHost(%v) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}
