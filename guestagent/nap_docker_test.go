package guestagent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/prototest"
)

func TestIsEventWatch(t *testing.T) {
	for req, want := range map[string]bool{
		"GET /v1.45/events?filters=%7B%7D HTTP/1.1\r\n": true,
		"GET /v1.45/events HTTP/1.1\r\n":                true,
		"GET /events HTTP/1.1\r\n":                      true,
		"GET /v1.45/events/x HTTP/1.1\r\n":              false,
		"GET /v1.45/containers/json HTTP/1.1\r\n":       false,
		"POST /v1.45/events HTTP/1.1\r\n":               false,
		"GET /vx/events HTTP/1.1\r\n":                   false,
		"GET /v1.45/eve":                                false, // cut short: not guessed
		"HEAD /_ping HTTP/1.1\r\n":                      false,
		"":                                              false,
	} {
		if got := isEventWatch([]byte(req)); got != want {
			t.Errorf("isEventWatch(%q) = %v, want %v", req, got, want)
		}
	}
}

// TestDockerStreamHoldsTheEngine: a docker stream wakes a napping engine before its bytes
// reach it and keeps it awake while open; an event watch only until the engine answers.
func TestDockerStreamHoldsTheEngine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "OK") })
	mux.HandleFunc("/v1.45/events", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	engine := &http.Server{Handler: mux}
	go engine.Serve(ln)
	defer engine.Close()

	r := newNapRig(t)
	srv := NewServer(ServeOptions{DockerSocket: sock, Nap: r.nap}, nil, slog.New(slog.DiscardHandler))
	l := &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go srv.ServeListener(ctx, l, FromHost)
	a, b := prototest.UnixPair(t)
	l.ch <- addrConn{Conn: b, remote: &vsock.Addr{ContextID: vsock.Host, Port: 40000}}
	if err := proto.HostHandshake(ctx, a); err != nil {
		t.Fatal(err)
	}
	sess, err := yamux.Client(a, proto.YamuxConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	// request opens a docker stream, sends one request and reads the answer's status line.
	request := func(line string) *yamux.Stream {
		t.Helper()
		st, err := sess.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		st.SetDeadline(time.Now().Add(10 * time.Second))
		if err := proto.WriteJSONLine(st, proto.Request{Type: proto.TypeDocker}); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(st)
		var resp proto.Response
		if err := proto.ReadJSONLine(br, &resp); err != nil || resp.Error != "" {
			t.Fatalf("docker stream: %v %s", err, resp.Error)
		}
		fmt.Fprintf(st, "%s HTTP/1.1\r\nHost: docker\r\n\r\n", line)
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, "200") {
			t.Fatalf("%s: %q, %v", line, status, err)
		}
		return st
	}

	r.idleEngine()
	r.expect(sigStop)
	st := request("GET /_ping")
	r.expect(sigCont)
	r.none("a docker connection is open")
	st.Close()
	r.expect(sigStop)

	st = request("GET /v1.45/events")
	r.expect(sigCont)
	r.expect(sigStop) // the watch stays open; the engine naps
	st.Close()
}
