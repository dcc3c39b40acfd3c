package dockerproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/prototest"
)

// fakeConn is a client connection in memory: in is what the client sent, out what it got.
// With step > 0 each read returns at most step bytes, so lines and bodies arrive cut.
type fakeConn struct {
	in   *bytes.Reader
	out  bytes.Buffer
	step int
}

func (f *fakeConn) Read(p []byte) (int, error) {
	if f.step > 0 && len(p) > f.step {
		p = p[:f.step]
	}
	return f.in.Read(p)
}
func (f *fakeConn) Write(p []byte) (int, error) { return f.out.Write(p) }
func (f *fakeConn) Close() error                { return nil }
func (f *fakeConn) CloseWrite() error           { return nil }

// run passes in through the check and returns what reached the engine and what the
// client was answered. It reads the check both ways Pipe could (Read with a small buffer,
// which walks every state boundary, and WriteTo, which io.Copy uses), with the client's
// bytes arriving whole and a few at a time, and fails unless all agree.
func run(t testing.TB, p *Policy, in string) (engine, client string) {
	t.Helper()
	engine, client = runRead(t, p, in, 0, bufSize)
	for _, v := range []struct{ step, size int }{{0, bufSize}, {3, bufSize}, {5, 64}} {
		e, c := runWriteTo(t, p, in, v.step, v.size)
		if v.size < bufSize && (e != engine || c != client) {
			// A small buffer may end inspection at a long line; it must not change bytes
			// when nothing is refused or translated.
			if client == "" && engine == in && e == in && c == "" {
				continue
			}
		}
		if e != engine || c != client {
			t.Fatalf("WriteTo (reads of %d, buffer %d) disagrees with Read:\nengine %q\nwant   %q\nclient %q\nwant   %q", v.step, v.size, e, engine, c, client)
		}
	}
	return engine, client
}

func runRead(t testing.TB, p *Policy, in string, step, size int) (engine, client string) {
	t.Helper()
	fc := &fakeConn{in: bytes.NewReader([]byte(in)), step: step}
	c := wrapSize(fc, p, nil, size)
	var got bytes.Buffer
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	return got.String(), fc.out.String()
}

// writeLog records each Write apart, so a test can see how the bytes were framed.
type writeLog struct {
	bytes.Buffer
	writes int
}

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func runWriteTo(t testing.TB, p *Policy, in string, step, size int) (engine, client string) {
	t.Helper()
	fc := &fakeConn{in: bytes.NewReader([]byte(in)), step: step}
	c := wrapSize(fc, p, nil, size)
	var got writeLog
	n, err := c.(io.WriterTo).WriteTo(&got)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(got.Len()) {
		t.Fatalf("WriteTo counted %d bytes, wrote %d", n, got.Len())
	}
	return got.String(), fc.out.String()
}

func testPolicy() *Policy {
	p := NewPolicy("dev", []string{"/Users", "/private", "/home/u"})
	p.resolve = func(s string) (string, error) {
		switch {
		case s == "/tmp" || strings.HasPrefix(s, "/tmp/"):
			return "/private" + s, nil
		case s == "/" || s == "/not" || s == "/srv" || s == "/home" || s == "/home/u":
			return s, nil
		}
		return "", fs.ErrNotExist
	}
	return p
}

func req(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api.moby.localhost\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

func chunked(method, target, body string, parts int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", method, target)
	step := max(1, len(body)/parts)
	for i := 0; i < len(body); i += step {
		part := body[i:min(len(body), i+step)]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(part), part)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func TestResolve(t *testing.T) {
	p := testPolicy()
	tests := []struct {
		src, want string
		denied    bool
	}{
		{src: "/Users/me/src", want: "/Users/me/src"},
		{src: "/Users", want: "/Users"},
		{src: "/home/u/x/../y", want: "/home/u/x/../y"},
		{src: "/var/run/docker.sock", want: "/var/run/docker.sock"},
		{src: "/run/docker.sock", want: "/run/docker.sock"},
		{src: "/var/lib/docker/volumes", want: "/var/lib/docker/volumes"},
		{src: "/", want: "/"},
		{src: "/proc", want: "/proc"},
		{src: "myvolume", want: "myvolume"},
		{src: "/tmp/x", want: "/private/tmp/x"},
		{src: "/tmp/does/not/exist", want: "/private/tmp/does/not/exist"},
		{src: "/not/shared", denied: true},
		{src: "/Usersx/a", denied: true},
		{src: "/home/u2", denied: true},
		{src: "/home/u/../v", denied: true},
		{src: "/srv/data", denied: true},
	}
	for _, tt := range tests {
		got, err := p.Resolve(tt.src)
		var d *DeniedError
		if tt.denied {
			if !errors.As(err, &d) || d.Path != tt.src {
				t.Errorf("Resolve(%q) = %q, %v; want a refusal naming the path", tt.src, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
}

func TestDeniedMessage(t *testing.T) {
	msg := (&DeniedError{Path: "/not/shared", Instance: "dev"}).Error()
	for _, want := range []string{"Mounts denied", "/not/shared", "berth config edit dev", "berth restart dev", "docs/file-sharing.md"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if msg := (&DeniedError{Path: "/x", Instance: "default"}).Error(); !strings.Contains(msg, "`berth restart`") {
		t.Errorf("default instance message %q names the instance", msg)
	}
}

func createBody(binds []string, mounts ...map[string]any) string {
	hc := map[string]any{"Binds": binds, "NetworkMode": "default"}
	if mounts != nil {
		hc["Mounts"] = mounts
	}
	b, _ := json.Marshal(map[string]any{"Image": "busybox", "Cmd": []string{"true"}, "HostConfig": hc})
	return string(b)
}

func TestPassThrough(t *testing.T) {
	p := testPolicy()
	allowed := createBody([]string{"/Users/me:/src", "vol:/data", "/var/run/docker.sock:/var/run/docker.sock:ro"},
		map[string]any{"Type": "volume", "Source": "/not/shared", "Target": "/v"})
	tests := map[string]string{
		"ping":           req("GET", "/_ping", nil, ""),
		"keep-alive":     req("GET", "/v1.43/info", nil, "") + req("GET", "/v1.43/containers/json", nil, "") + req("HEAD", "/_ping", nil, ""),
		"stray CRLF":     "\r\n" + req("GET", "/_ping", nil, "") + "\r\n" + req("GET", "/_ping", nil, ""),
		"allowed create": req("POST", "/v1.43/containers/create?name=x", []string{"Content-Type: application/json"}, allowed),
		"allowed chunked create": chunked("POST", "/containers/create", allowed, 3) +
			req("GET", "/_ping", nil, ""),
		"build body": chunked("POST", "/v1.43/build?t=x", strings.Repeat("POST /containers/create HTTP/1.1\r\n", 50), 7) +
			req("POST", "/containers/create", nil, createBody([]string{"/Users/a:/a"})),
		"load body": req("POST", "/images/load", nil, strings.Repeat("\x00tar", 5000)) + req("GET", "/_ping", nil, ""),
		// After an upgrade the bytes are no HTTP: a create lookalike there is not inspected.
		"attach upgrade": req("POST", "/v1.43/containers/abc/attach?stream=1&stdin=1", []string{"Connection: Upgrade", "Upgrade: tcp"}, "") +
			req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"exec start": req("POST", "/v1.43/exec/abc/start", []string{"Connection: Upgrade", "Upgrade: tcp"}, `{"Detach":false,"Tty":true}`) +
			"\x03raw stdin\x04" + req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"exec start without upgrade": req("POST", "/exec/abc/start", nil, `{"Detach":false}`) +
			req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"old attach without upgrade": req("POST", "/containers/abc/attach?stream=1", nil, "") +
			req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"session":         req("POST", "/session", []string{"Upgrade: h2c", "Connection: Upgrade", "X-Docker-Expose-Session-Uuid: u"}, "") + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
		"grpc":            req("POST", "/grpc", []string{"Upgrade: h2c", "Connection: Upgrade"}, "") + "\x00\x01\x02",
		"not http":        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"garbage":         "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"truncated head":  "GET /_ping HTTP/1.1\r\nHost:",
		"expect continue": req("POST", "/containers/create", []string{"Expect: 100-continue"}, createBody([]string{"/not/shared:/x"})),
		"not json":        req("POST", "/containers/create", nil, "{not json"),
		"ws attach":       req("GET", "/containers/abc/attach/ws?stream=1", nil, "") + "\x81\x05hello",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			engine, client := run(t, p, in)
			if engine != in {
				t.Errorf("engine got\n%q\nwant\n%q", engine, in)
			}
			if client != "" {
				t.Errorf("client was answered %q", client)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	p := testPolicy()
	tests := map[string]string{
		"binds":   req("POST", "/v1.43/containers/create", nil, createBody([]string{"/Users/a:/a", "/not/shared:/x:ro"})),
		"mounts":  req("POST", "/containers/create?name=y", nil, createBody(nil, map[string]any{"Type": "bind", "Source": "/not/shared", "Target": "/x"})),
		"chunked": chunked("POST", "/v1.41/containers/create", createBody([]string{"/not/shared:/x"}), 4),
		"after keep-alive": req("GET", "/_ping", nil, "") +
			req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})),
		"service":        req("POST", "/v1.43/services/create", nil, `{"Name":"s","TaskTemplate":{"ContainerSpec":{"Image":"busybox","Mounts":[{"Type":"bind","Source":"/not/shared","Target":"/x"}]}}}`),
		"service update": req("POST", "/services/abc/update?version=3", nil, `{"TaskTemplate":{"ContainerSpec":{"Mounts":[{"Type":"bind","Source":"/not/shared","Target":"/x"}]}}}`),
	}
	tests["after a detached exec start"] = req("POST", "/v1.43/exec/abc/start", []string{"Content-Type: application/json"}, `{"Detach":true,"Tty":false}`) +
		req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"}))
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			engine, client := run(t, p, in)
			if strings.Contains(engine, "/not/shared") {
				t.Errorf("the refused request reached the engine: %q", engine)
			}
			if name == "after keep-alive" && engine != req("GET", "/_ping", nil, "") {
				t.Errorf("engine got %q, want only the ping", engine)
			}
			status, body, ok := strings.Cut(client, "\r\n\r\n")
			if !ok || !strings.HasPrefix(status, "HTTP/1.1 400 ") || !strings.Contains(status, "Connection: close") {
				t.Fatalf("client got %q", client)
			}
			var m struct{ Message string }
			if err := json.Unmarshal([]byte(body), &m); err != nil || !strings.Contains(m.Message, "/not/shared is not shared") {
				t.Errorf("body %q: %v", body, err)
			}
			if !strings.Contains(status, fmt.Sprintf("Content-Length: %d", len(body))) {
				t.Errorf("length header does not match the body: %q", status)
			}
		})
	}
}

func TestSwarmCheck(t *testing.T) {
	initReq := req("POST", "/v1.56/swarm/init", []string{"Content-Type: application/json"}, `{"ListenAddr":"0.0.0.0:2377"}`)
	joinReq := req("POST", "/swarm/join", nil, `{"RemoteAddrs":["10.0.0.1:2377"],"JoinToken":"x"}`)
	ping := req("GET", "/_ping", nil, "")
	asked := 0
	refusing := testPolicy()
	refusing.Swarm = func() error { asked++; return errors.New("berth: swarm needs iptables") }
	for name, c := range map[string]struct{ in, engine string }{
		"init":              {initReq, ""},
		"join after a ping": {ping + joinReq, ping},
	} {
		asked = 0
		engine, client := run(t, refusing, c.in)
		if engine != c.engine {
			t.Errorf("%s: the engine got %q, want %q", name, engine, c.engine)
		}
		status, body, _ := strings.Cut(client, "\r\n\r\n")
		if !strings.HasPrefix(status, "HTTP/1.1 400 ") || !strings.Contains(body, "berth: swarm needs iptables") {
			t.Errorf("%s: client got %q", name, client)
		}
		if asked == 0 {
			t.Errorf("%s: Swarm was not asked", name)
		}
	}
	// Allowed, or no check: the requests pass untouched, and other requests never ask.
	allowing := testPolicy()
	allowing.Swarm = func() error { asked++; return nil }
	asked = 0
	for _, p := range []*Policy{allowing, testPolicy()} {
		in := ping + initReq + req("POST", "/swarm/leave", nil, "")
		if engine, client := run(t, p, in); engine != in || client != "" {
			t.Errorf("engine got %q, client %q", engine, client)
		}
	}
	if asked == 0 {
		t.Error("the allowing check was not asked")
	}
	// Only swarm requests ask.
	asked = 0
	run(t, allowing, ping+req("GET", "/swarm", nil, ""))
	if asked != 0 {
		t.Errorf("asked %d times without a swarm init or join", asked)
	}
}

func TestNoMountCheck(t *testing.T) {
	p := testPolicy()
	p.NoMountCheck = true
	in := req("POST", "/containers/create", nil, createBody([]string{"/not/shared:/x"})) +
		req("POST", "/services/create", nil, `{"TaskTemplate":{"ContainerSpec":{"Mounts":[{"Type":"bind","Source":"/not/shared","Target":"/x"}]}}}`)
	if engine, client := run(t, p, in); engine != in || client != "" {
		t.Errorf("engine got %q, client %q", engine, client)
	}
}

func TestTranslated(t *testing.T) {
	p := testPolicy()
	for _, chunk := range []bool{false, true} {
		body := createBody([]string{"/tmp/x:/src", "/Users/a:/a"}, map[string]any{"Type": "bind", "Source": "/tmp/y", "Target": "/y"})
		in := req("POST", "/v1.43/containers/create", []string{"Content-Type: application/json"}, body)
		if chunk {
			in = chunked("POST", "/v1.43/containers/create", body, 3)
		}
		in += req("GET", "/_ping", nil, "")
		engine, client := run(t, p, in)
		if client != "" {
			t.Fatalf("client was answered %q", client)
		}
		h, rest, _ := strings.Cut(engine, "\r\n\r\n")
		if strings.Contains(h, "Transfer-Encoding") || (!chunk && !strings.Contains(h, "Content-Type: application/json")) {
			t.Errorf("head %q", h)
		}
		var n int
		for _, l := range strings.Split(h, "\r\n") {
			fmt.Sscanf(l, "Content-Length: %d", &n)
		}
		newBody, tail := rest[:n], rest[n:]
		if tail != req("GET", "/_ping", nil, "") {
			t.Errorf("after the body: %q", tail)
		}
		var got struct {
			Image      string
			HostConfig struct {
				Binds       []string
				NetworkMode string
				Mounts      []struct{ Type, Source, Target string }
			}
		}
		if err := json.Unmarshal([]byte(newBody), &got); err != nil {
			t.Fatalf("body %q: %v", newBody, err)
		}
		if got.Image != "busybox" || got.HostConfig.NetworkMode != "default" ||
			strings.Join(got.HostConfig.Binds, ",") != "/private/tmp/x:/src,/Users/a:/a" ||
			got.HostConfig.Mounts[0].Source != "/private/tmp/y" || got.HostConfig.Mounts[0].Target != "/y" {
			t.Errorf("rewritten body %+v", got)
		}
	}
}

func TestParseHead(t *testing.T) {
	tests := []struct {
		name, raw string
		wantErr   bool
		cl        int64
		chunked   bool
		upgrade   bool
	}{
		{name: "get", raw: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", cl: -1},
		{name: "bare LF", raw: "GET / HTTP/1.1\nHost: x\n\n", cl: -1},
		{name: "length", raw: "POST / HTTP/1.1\r\ncontent-length:  12 \r\n\r\n", cl: 12},
		{name: "same length twice", raw: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", cl: 3},
		{name: "conflicting lengths", raw: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", wantErr: true},
		{name: "signed length", raw: "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", wantErr: true},
		{name: "chunked wins", raw: "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", cl: -1, chunked: true},
		{name: "gzip coding", raw: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", wantErr: true},
		{name: "upgrade", raw: "POST /x HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: tcp\r\n\r\n", cl: -1, upgrade: true},
		{name: "folded", raw: "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", wantErr: true},
		{name: "space in name", raw: "GET / HTTP/1.1\r\nA b: c\r\n\r\n", wantErr: true},
		{name: "http2", raw: "PRI * HTTP/2.0\r\n\r\n", wantErr: true},
		{name: "lower method", raw: "get / HTTP/1.1\r\n\r\n", wantErr: true},
		{name: "no end", raw: "GET / HTTP/1.1\r\nA: b\r\n", wantErr: true},
	}
	for _, tt := range tests {
		h, err := parseHead([]byte(tt.raw))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err %v", tt.name, err)
			continue
		}
		if err == nil && (h.contentLength != tt.cl || h.chunked != tt.chunked || h.upgrade != tt.upgrade) {
			t.Errorf("%s: %+v", tt.name, h)
		}
	}
}

func TestKind(t *testing.T) {
	tests := map[string]int{
		"POST /containers/create":               kindCreateContainer,
		"POST /v1.43/containers/create?name=a":  kindCreateContainer,
		"POST /v1.24/containers/create":         kindCreateContainer,
		"POST /vx/containers/create":            kindPlain,
		"POST /v1.43/containers/create/x":       kindPlain,
		"GET /containers/create":                kindPlain,
		"POST /services/create":                 kindService,
		"POST /v1.43/services/abc/update?v=1":   kindService,
		"POST /v1.43/containers/abc/attach":     kindHijack,
		"GET /v1.43/containers/abc/attach/ws":   kindHijack,
		"POST /exec/abc/start":                  kindHijack,
		"POST /session":                         kindHijack,
		"POST /v1.43/grpc":                      kindHijack,
		"GET /v1.43/containers/abc/logs?follow": kindPlain,
		"POST /v1.56/swarm/init":                kindSwarm,
		"POST /swarm/join":                      kindSwarm,
		"POST /v1.56/swarm/leave?force=1":       kindPlain,
		"GET /swarm":                            kindPlain,
	}
	for line, want := range tests {
		method, target, _ := strings.Cut(line, " ")
		h, err := parseHead([]byte(method + " " + target + " HTTP/1.1\r\n\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if got := h.kind(); got != want {
			t.Errorf("%s: kind %d, want %d", line, got, want)
		}
	}
}

// With every path shared nothing is refused or rewritten, so whatever the client sends
// must reach the engine byte for byte.
func FuzzConn(f *testing.F) {
	f.Add(req("POST", "/containers/create", nil, createBody([]string{"/a:/b"})))
	f.Add(chunked("POST", "/v1.43/containers/create", createBody([]string{"/a:/b"}), 3) + req("GET", "/_ping", nil, ""))
	f.Add(chunked("POST", "/build", "xyz", 2) + "\r\n" + req("POST", "/containers/abc/attach", []string{"Upgrade: tcp", "Connection: Upgrade"}, "") + "raw")
	f.Add("GET / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n")
	f.Add(req("POST", "/exec/abc/start", nil, `{"Detach":true}`) + req("GET", "/_ping", nil, ""))
	f.Fuzz(func(t *testing.T, in string) {
		p := NewPolicy("x", []string{"/"})
		engine, client := run(t, p, in)
		if engine != in || client != "" {
			t.Fatalf("in %q\nengine %q\nclient %q", in, engine, client)
		}
	})
}

func FuzzParseHead(f *testing.F) {
	f.Add("POST /v1.43/containers/create HTTP/1.1\r\nContent-Length: 2\r\n\r\n")
	f.Add("GET / HTTP/1.1\nTransfer-Encoding: chunked\n\n")
	f.Fuzz(func(t *testing.T, raw string) {
		h, err := parseHead([]byte(raw))
		if err != nil {
			return
		}
		if h.chunked && h.contentLength != -1 {
			t.Fatalf("chunked with a length: %+v", h)
		}
		_ = h.kind()
	})
}

// A refusing policy never lets a denied path through, whatever the framing around it.
func FuzzRefuse(f *testing.F) {
	f.Add(createBody([]string{"/not/shared:/x"}), 3, false)
	f.Add(createBody(nil, map[string]any{"Type": "bind", "Source": "/not/shared"}), 1, true)
	f.Fuzz(func(t *testing.T, body string, parts int, chunk bool) {
		in := req("POST", "/containers/create", nil, body)
		if chunk {
			in = chunked("POST", "/containers/create", body, max(1, parts%10))
		}
		engine, client := run(t, testPolicy(), in)
		if client == "" && engine != in {
			// Not refused: only a translation may change it.
			if !strings.Contains(engine, "/private/tmp") {
				t.Fatalf("changed without a translation: %q", engine)
			}
		}
		if client != "" && engine != "" {
			t.Fatalf("refused, yet the engine got %q", engine)
		}
	})
}

// buildBody is a chunked POST /build of n chunks of size bytes (a build context: Go's HTTP
// client writes 32 KiB chunks).
func buildBody(n, size int) []byte {
	var in bytes.Buffer
	in.WriteString("POST /v1.43/build HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	chunk := bytes.Repeat([]byte{'x'}, size)
	for range n {
		fmt.Fprintf(&in, "%x\r\n", len(chunk))
		in.Write(chunk)
		in.WriteString("\r\n")
	}
	in.WriteString("0\r\n\r\n")
	return in.Bytes()
}

// Bodies go on in writes as large as the reads they came in, framing and all: no write per
// chunk line (each write is a frame on the agent stream).
func TestBodyWrites(t *testing.T) {
	for name, in := range map[string][]byte{
		"chunked 32 KiB": buildBody(64, 32<<10),
		"chunked 100 B":  buildBody(20000, 100),
		"length":         []byte(req("POST", "/images/load", nil, strings.Repeat("x", 2<<20))),
		"attach":         []byte(req("POST", "/containers/a/attach?stdin=1", []string{"Connection: Upgrade", "Upgrade: tcp"}, "") + strings.Repeat("x", 2<<20)),
	} {
		t.Run(name, func(t *testing.T) {
			fc := &fakeConn{in: bytes.NewReader(in)}
			var got writeLog
			if _, err := Wrap(fc, NewPolicy("x", nil), nil).(io.WriterTo).WriteTo(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), in) {
				t.Fatal("the engine got other bytes")
			}
			if limit := len(in)/bufSize + 4; got.writes > limit {
				t.Errorf("%d bytes went on in %d writes, want at most %d", len(in), got.writes, limit)
			}
		})
	}
}

// BenchmarkChunkedBody measures a 64 MiB chunked body (a build context: 32 KiB chunks, as
// Go's HTTP client writes them) through the check, in memory, against copying it directly
// as the unchecked socket does (io.Copy, 32 KiB buffer).
func BenchmarkChunkedBody(b *testing.B) {
	data := buildBody(2048, 32<<10)
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			dst := struct{ io.Writer }{io.Discard} // the agent stream: no ReadFrom
			for b.Loop() {
				fc := &fakeConn{in: bytes.NewReader(data)}
				var r io.Reader = struct{ io.Reader }{fc} // a unix socket: no WriteTo
				if on {
					r = Wrap(fc, NewPolicy("x", nil), nil)
				}
				if _, err := io.Copy(dst, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// pipeThroughCheck runs proto.Pipe between a client and an engine socket pair, the
// client's side wrapped in the check, as hostd runs it; piped gets Pipe's result.
func pipeThroughCheck(t *testing.T) (client, engine *net.UnixConn, piped <-chan error) {
	client, proxySide := prototest.UnixPair(t)
	proxyEngine, engine := prototest.UnixPair(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- proto.Pipe(ctx, Wrap(proxySide, testPolicy(), nil), proxyEngine) }()
	return client, engine, done
}

// Through proto.Pipe on real unix sockets, as hostd runs it: a chunked build body, the
// requests after it, and an attach whose raw bytes end with the client's half-close all
// reach the engine as sent; the engine's answer, sent after that EOF, reaches the client.
func TestPipeThroughCheck(t *testing.T) {
	client, engine, piped := pipeThroughCheck(t)

	sent := string(buildBody(40, 32<<10)) + req("GET", "/_ping", nil, "") +
		req("POST", "/v1.43/containers/abc/attach?stream=1&stdin=1", []string{"Connection: Upgrade", "Upgrade: tcp"}, "") +
		strings.Repeat("raw stdin ", 100000)
	wrote := make(chan error, 1)
	go func() {
		_, err := io.WriteString(client, sent)
		if err == nil {
			err = client.CloseWrite()
		}
		wrote <- err
	}()
	got, err := io.ReadAll(engine)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != sent {
		t.Fatalf("the engine got %d bytes, not the %d sent", len(got), len(sent))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(engine, "HTTP/1.1 101 UPGRADED\r\n\r\nbye"); err != nil {
		t.Fatal(err)
	}
	engine.CloseWrite()
	answer, err := io.ReadAll(client)
	if err != nil || string(answer) != "HTTP/1.1 101 UPGRADED\r\n\r\nbye" {
		t.Fatalf("the client got %q, %v", answer, err)
	}
	client.Close()
	engine.Close()
	if err := <-piped; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
}

// A refused create on a real socket: the client gets the answer, the engine only EOF.
func TestPipeRefused(t *testing.T) {
	client, engine, piped := pipeThroughCheck(t)

	ping := req("GET", "/_ping", nil, "")
	if _, err := io.WriteString(client, ping+chunked("POST", "/containers/create", createBody([]string{"/not/shared:/x"}), 3)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(engine) // EOF: the refusal ends the engine's side
	if err != nil || string(got) != ping {
		t.Fatalf("the engine got %q, %v", got, err)
	}
	engine.Close()
	answer, err := io.ReadAll(client)
	if err != nil || !strings.HasPrefix(string(answer), "HTTP/1.1 400 ") || !strings.Contains(string(answer), "/not/shared is not shared") {
		t.Fatalf("the client got %q, %v", answer, err)
	}
	client.Close()
	if err := <-piped; err != nil {
		t.Fatalf("Pipe: %v", err)
	}
}
