package guestagent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
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

func TestIsRequestLine(t *testing.T) {
	for req, want := range map[string]bool{
		"GET /_ping HTTP/1.1\r\n":        true,
		"HEAD /_ping HTTP/1.1\r\n":       true,
		"POST /v1.45/build HTTP/1.1\r\n": true,
		"OPTIONS / HTTP/1.1\r\n":         true,
		"{\"Image\":\"busybox\"}":        false,
		"hello /world":                   false,
		"Get /x":                         false,
		"GE":                             false,
		"":                               false,
	} {
		if got := isRequestLine([]byte(req)); got != want {
			t.Errorf("isRequestLine(%q) = %v, want %v", req, got, want)
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
	// open opens a docker stream; send sends one request on it and reads the answer's
	// status line and headers (the ping's body too).
	open := func() (*yamux.Stream, *bufio.Reader) {
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
		return st, br
	}
	send := func(st *yamux.Stream, br *bufio.Reader, path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://docker"+path, nil)
		if err := req.Write(st); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		if path == "/_ping" {
			io.ReadAll(resp.Body)
		}
	}

	r.idleEngine()
	r.expect(sigStop)
	st, br := open()
	r.expect(sigCont) // before the engine was dialed
	send(st, br, "/_ping")
	r.none("a docker connection is open")
	st.Close()
	r.expect(sigStop)

	// A keep-alive connection: a ping, then an event watch on it (as the docker CLI and
	// the tray's client do). The watch lets the engine nap; another request on the same
	// connection would wake it first.
	st, br = open()
	r.expect(sigCont)
	send(st, br, "/_ping")
	r.none("after a ping on an open connection")
	send(st, br, "/v1.45/events")
	r.expect(sigStop) // the watch stays open; the engine naps
	st.Close()
}
