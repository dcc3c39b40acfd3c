package proto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The fuzz targets below feed bytes the other side of the agent channel controls to every
// parser that reads them. `make fuzz` runs each for a while; `go test` runs the seeds.

// FuzzReadFrame: exec and udp streams. A frame read must re-encode to the bytes consumed,
// and the payload decoders must reject, not panic on, any payload.
func FuzzReadFrame(f *testing.F) {
	var seed bytes.Buffer
	WriteFrame(&seed, FrameStdout, []byte("hello"))
	WriteFrame(&seed, FrameResize, ResizePayload(24, 80))
	WriteFrame(&seed, FrameExit, ExitPayload(-1))
	f.Add(seed.Bytes())
	f.Add([]byte{FrameStdinClose, 0, 0, 0, 0})
	f.Add([]byte{FrameStdin, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{FrameStdout, 0, 0, 0, 9, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			before := r.Len()
			kind, payload, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(payload) > MaxFrame {
				t.Fatalf("payload of %d bytes exceeds MaxFrame", len(payload))
			}
			consumed := b[len(b)-before : len(b)-r.Len()]
			var again bytes.Buffer
			if err := WriteFrame(&again, kind, payload); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), consumed) {
				t.Fatalf("frame re-encodes to %x, read from %x", again.Bytes(), consumed)
			}
			switch kind {
			case FrameResize:
				if rows, cols, err := ParseResize(payload); err == nil && !bytes.Equal(ResizePayload(rows, cols), payload) {
					t.Fatalf("resize %x round-trips to %d×%d", payload, rows, cols)
				}
			case FrameExit:
				if code, err := ParseExit(payload); err == nil && !bytes.Equal(ExitPayload(code), payload) {
					t.Fatalf("exit %x round-trips to %d", payload, code)
				}
			}
		}
	})
}

// FuzzReadJSONLine: the first line of every stream, read by the agent (a Request) and by
// the host (a Response). It must consume nothing past the newline.
func FuzzReadJSONLine(f *testing.F) {
	f.Add([]byte(`{"type":"exec","exec":{"argv":["sh"],"tty":true,"rows":24,"cols":80}}` + "\nrest"))
	f.Add([]byte(`{"type":"mount","mounts":[{"tag":"s0","path":"/Users/a b","fstype":"virtiofs"}]}` + "\n"))
	f.Add([]byte(`{"info":{"protocolVersion":2,"kernelBoot":1500000000,"dataDisk":{"total":1,"used":2}}}` + "\n"))
	f.Add([]byte(`{"error":"engine socket: no such file"}` + "\n"))
	f.Add([]byte(`{"type":"cancel","stream":4294967295}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		var req Request
		err := ReadJSONLine(r, &req)
		if i := bytes.IndexByte(b, '\n'); i >= 0 && i <= maxHeader {
			if got, want := len(b)-r.Len(), i+1; got != want {
				t.Fatalf("consumed %d bytes, the line has %d (err %v)", got, want, err)
			}
		}
		var resp Response
		ReadJSONLine(bytes.NewReader(b), &resp)
		if resp.Info != nil && resp.Info.DataDisk.NearlyFull() && resp.Info.DataDisk.Used == 0 {
			t.Fatalf("an empty disk counts as nearly full: %+v", resp.Info.DataDisk)
		}
	})
}

// FuzzReadLines: the long-lived JSON-line streams (ports, events, disk, notify). Every byte
// outside a skipped line comes back, newline-split, and each line decodes or fails cleanly
// into the types both sides read from them.
func FuzzReadLines(f *testing.F) {
	f.Add([]byte(`[{"proto":"tcp","hostIP":"0.0.0.0","port":8080,"source":"listener"}]` + "\n"))
	f.Add([]byte(`{"time":"2026-01-02T03:04:05Z","engine":"running"}` + "\n" + `{"total":10,"used":9}` + "\n"))
	f.Add([]byte(`[{"path":"/a","op":"write"},{"path":"/b","op":"rename"}]` + "\nno newline at the end"))
	f.Add([]byte("\n\r\n"))
	// A full disk of 2^62 bytes: NearlyFull once said no (its integer products overflowed).
	f.Add([]byte(`{"total":4611686018427387904,"used":4611686018427387904}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var lines [][]byte
		err := ReadLines(bytes.NewReader(b), func(line []byte, err error) {
			if err != nil {
				t.Fatalf("a line under MaxLine was reported as %v", err)
			}
			lines = append(lines, append([]byte(nil), line...))
			var ports []Port
			if json.Unmarshal(line, &ports) == nil {
				for _, p := range ports {
					_ = p.Key()
				}
			}
			var ev Event
			json.Unmarshal(line, &ev)
			var du DiskUsage
			if json.Unmarshal(line, &du) == nil {
				used, total := float64(du.Used), float64(du.Total)
				if du.NearlyFull() && (total == 0 || used < 0.89*total) || !du.NearlyFull() && total > 0 && used > 0.91*total {
					t.Fatalf("%+v: NearlyFull = %v", du, du.NearlyFull())
				}
			}
			var notes []NotifyEvent
			json.Unmarshal(line, &notes)
		})
		if err != nil {
			t.Fatal(err)
		}
		// Everything up to the last newline comes back, line by line.
		whole := b[:bytes.LastIndexByte(b, '\n')+1]
		want := bytes.SplitAfter(whole, []byte("\n"))
		want = want[:len(want)-1]
		if len(want) != len(lines) {
			t.Fatalf("got %d lines, want %d", len(lines), len(want))
		}
		for i := range want {
			if !bytes.Equal(append(lines[i], '\n'), want[i]) {
				t.Fatalf("line %d is %q, want %q", i, lines[i], want[i])
			}
		}
	})
}

// FuzzAgentHandshake: what the agent reads from the host before yamux starts. It must
// answer with exactly the nonce of the first sync line and read nothing past that line.
func FuzzAgentHandshake(f *testing.F) {
	f.Add([]byte("\n" + syncPrefix + "0123456789abcdef\nyamux"))
	f.Add([]byte("garbage\x00\x01" + strings.Repeat("x", 300) + "\n" + syncPrefix + "n\n"))
	f.Add([]byte(syncPrefix + "\n" + syncPrefix + " \n"))
	// A sync line longer than maxSyncLine is garbage: it was once answered with its first
	// bytes as the nonce.
	f.Add([]byte(syncPrefix + strings.Repeat("x", 200) + "\n" + syncPrefix + "good\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.NewReader(b)
		var out bytes.Buffer
		err := AgentHandshake(struct {
			io.Reader
			io.Writer
		}{in, &out})
		reply, ok := bytes.CutPrefix(out.Bytes(), []byte(Hello))
		if !ok {
			t.Fatalf("the agent did not say hello first: %q", out.Bytes())
		}
		if err != nil {
			if len(reply) != 0 {
				t.Fatalf("failed (%v) but answered %q", err, reply)
			}
			return
		}
		nonce, ok := bytes.CutPrefix(reply, []byte(okPrefix))
		if !ok || !bytes.HasSuffix(nonce, []byte("\n")) {
			t.Fatalf("bad answer %q", reply)
		}
		consumed := b[:len(b)-in.Len()]
		if !bytes.HasSuffix(consumed, append([]byte(syncPrefix), nonce...)) {
			t.Fatalf("answered %q after reading %q", reply, consumed)
		}
	})
}

// FuzzHostHandshake: what the host reads from the agent channel before yamux starts. The
// nonce is fresh, so no input can satisfy it: every input must end in an error, never a
// panic or a hang.
func FuzzHostHandshake(f *testing.F) {
	f.Add([]byte(Hello + okPrefix + "0000000000000000\n"))
	f.Add([]byte(okPrefix + "\n\n\n"))
	f.Add([]byte(strings.Repeat("\x00", 200)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &scriptConn{r: bytes.NewReader(b)}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err := HostHandshake(ctx, c)
		if err == nil {
			t.Fatalf("handshake succeeded on %q", b)
		}
		if !errors.Is(err, io.EOF) {
			t.Fatalf("want EOF, got %v", err)
		}
		if !bytes.HasPrefix(c.w.Bytes(), []byte("\n"+syncPrefix)) {
			t.Fatalf("host wrote %q", c.w.Bytes())
		}
	})
}

// scriptConn is a net.Conn that reads a fixed script and records what is written.
type scriptConn struct {
	r *bytes.Reader
	w bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return nil }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
