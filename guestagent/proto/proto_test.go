package proto

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	WriteFrame(&buf, FrameStdout, []byte("hello"))
	WriteFrame(&buf, FrameResize, ResizePayload(30, 100))
	WriteFrame(&buf, FrameExit, ExitPayload(-3))
	k, p, err := ReadFrame(&buf)
	if err != nil || k != FrameStdout || string(p) != "hello" {
		t.Fatalf("frame 1: %d %q %v", k, p, err)
	}
	k, p, _ = ReadFrame(&buf)
	if r, c, err := ParseResize(p); k != FrameResize || r != 30 || c != 100 || err != nil {
		t.Fatalf("resize: %d %d %v", r, c, err)
	}
	k, p, _ = ReadFrame(&buf)
	if code, err := ParseExit(p); k != FrameExit || code != -3 || err != nil {
		t.Fatalf("exit: %d %v", code, err)
	}
	if _, _, err := ReadFrame(&buf); err != io.EOF {
		t.Errorf("end: %v", err)
	}
	// A length beyond MaxFrame is refused before allocating.
	bad := []byte{1, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := ReadFrame(bytes.NewReader(bad)); err == nil {
		t.Error("huge frame accepted")
	}
}

func TestJSONLineLeavesPayload(t *testing.T) {
	r := strings.NewReader(`{"type":"docker"}` + "\nRAW BYTES")
	var req Request
	if err := ReadJSONLine(r, &req); err != nil || req.Type != TypeDocker {
		t.Fatalf("%+v %v", req, err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "RAW BYTES" {
		t.Errorf("payload consumed: %q", rest)
	}
}

// TestPipeHalfClose checks the property `docker run -i` depends on: after the client
// closes its write side, the reply still arrives in full.
func TestPipeHalfClose(t *testing.T) {
	a, b := net.Pipe()
	client, _ := yamux.Client(a, YamuxConfig())
	server, _ := yamux.Server(b, YamuxConfig())
	defer client.Close()
	defer server.Close()

	// The "engine": reads everything, then answers with it upper-cased.
	engineLn, err := net.Listen("unix", t.TempDir()+"/e.sock")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := engineLn.Accept()
		if err != nil {
			return
		}
		in, _ := io.ReadAll(c)
		c.Write(bytes.ToUpper(in))
		c.Close()
	}()
	go func() {
		st, err := server.AcceptStream()
		if err != nil {
			return
		}
		c, err := net.Dial("unix", engineLn.Addr().String())
		if err != nil {
			return
		}
		Pipe(context.Background(), HalfStream{Stream: st}, c.(*net.UnixConn))
	}()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("abc"), 1<<20)
	go func() {
		st.Write(payload)
		st.Close() // half-close: FIN, reads continue
	}()
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.ToUpper(payload)) {
		t.Errorf("got %d bytes, want %d", len(got), len(payload))
	}
}

func TestDiskNearlyFull(t *testing.T) {
	for _, c := range []struct {
		u    DiskUsage
		want bool
	}{
		{DiskUsage{}, false},
		{DiskUsage{Total: 100, Used: 90}, false},
		{DiskUsage{Total: 100, Used: 91}, true},
		{DiskUsage{Total: 16 << 40, Used: 16<<40 - 1}, true}, // no overflow on a 16 TiB disk
		{DiskUsage{Total: 4 << 30, Used: 4 << 30 * 9 / 10}, false},
		{DiskUsage{Total: 4 << 30, Used: 4<<30*9/10 + 1}, true},
	} {
		if got := c.u.NearlyFull(); got != c.want {
			t.Errorf("%+v.NearlyFull() = %v, want %v", c.u, got, c.want)
		}
	}
}

func TestClockAction(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		action string
	}{
		{0, ClockNone},
		{time.Millisecond, ClockNone},
		{-time.Millisecond, ClockNone},
		{30 * time.Millisecond, ClockSlew},
		{-99 * time.Millisecond, ClockSlew},
		{100 * time.Millisecond, ClockStep},
		{-300 * time.Millisecond, ClockStep},
		{-90 * time.Second, ClockStep}, // a VM paused for 90 s
	} {
		if got := ClockAction(int64(tc.d)); got != tc.action {
			t.Errorf("ClockAction(%s) = %s, want %s", tc.d, got, tc.action)
		}
	}
}
