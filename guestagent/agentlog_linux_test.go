//go:build linux

package guestagent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLogSink(t *testing.T) {
	var s logSink
	s.Write([]byte("before open\n"))
	p := filepath.Join(t.TempDir(), "run", "agent.log")
	if err := s.open(p); err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("after open\n"))
	b, _ := os.ReadFile(p)
	if string(b) != "before open\nafter open\n" {
		t.Fatalf("log %q", b)
	}
	// Rotation keeps one old file and starts a new one.
	big := bytes.Repeat([]byte("x"), maxAgentLog)
	s.Write(big)
	s.Write([]byte("new\n"))
	if b, _ := os.ReadFile(p); string(b) != "new\n" {
		t.Fatalf("after rotation the log has %d bytes", len(b))
	}
	if st, err := os.Stat(p + ".1"); err != nil || st.Size() != maxAgentLog {
		t.Fatalf("rotated file: %v %v", st, err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestTeeLines(t *testing.T) {
	var a, b bytes.Buffer
	teeLines(strings.NewReader("one\ntwo\nlast without newline"), failWriter{}, &a, &b)
	if a.String() != "one\ntwo\nlast without newline" || b.String() != a.String() {
		t.Fatalf("a=%q b=%q", a.String(), b.String())
	}
}

func TestFanoutHandler(t *testing.T) {
	var info, debug bytes.Buffer
	log := slog.New(fanoutHandler{
		slog.NewTextHandler(&info, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug}),
	}).With("proc", "init")
	log.Debug("dbg")
	log.Info("hello", "k", 1)
	if strings.Contains(info.String(), "dbg") || !strings.Contains(info.String(), "hello") || !strings.Contains(info.String(), "proc=init") {
		t.Fatalf("info handler got %q", info.String())
	}
	if !strings.Contains(debug.String(), "dbg") || !strings.Contains(debug.String(), "k=1") {
		t.Fatalf("debug handler got %q", debug.String())
	}
	if !log.Handler().Enabled(context.Background(), slog.LevelDebug) {
		t.Fatal("fanout not enabled for debug")
	}
}
