package daemon

import (
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
)

// TestAgentPing: a light ping needs only the agent's yamux layer, a full one its request
// handling too, so an agent that reads frames but never handles a request passes the
// first and fails the second within pingTimeout; a closed session fails both.
func TestAgentPing(t *testing.T) {
	old := pingTimeout
	pingTimeout = 300 * time.Millisecond
	t.Cleanup(func() { pingTimeout = old })

	hostEnd, guestEnd := net.Pipe()
	// The guest's session answers yamux pings but nothing accepts its streams.
	srv, err := yamux.Server(guestEnd, proto.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	a, err := newAgentClient(hostEnd, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()

	if err := a.ping(t.Context(), false); err != nil {
		t.Fatalf("light ping: %v", err)
	}
	start := time.Now()
	if err := a.ping(t.Context(), true); err == nil {
		t.Fatal("a full ping was answered by an agent that handles no request")
	}
	if took := time.Since(start); took > pingTimeout+2*time.Second {
		t.Errorf("the full ping gave up after %s, want about pingTimeout (%s)", took, pingTimeout)
	}
	srv.Close()
	if err := a.ping(t.Context(), false); err == nil {
		t.Fatal("a light ping over a closed session succeeded")
	}
}
