package guestagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCopyFollowAcrossRotation: a follower of engine.log keeps going when the log is
// rotated (renamed to engine.log.1 and started afresh).
func TestCopyFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "engine.log")
	os.WriteFile(path, []byte("one\n"), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- copyFollow(ctx, &out, &f, path, true, nil) }()
	appendTo := func(p, s string) {
		w, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		w.WriteString(s)
		w.Close()
	}
	appendTo(path, "two\n")
	os.Rename(path, path+".1")
	appendTo(path+".1", "three\n")
	appendTo(path, "four\n")
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\ntwo\nthree\nfour\n" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	f.Close()
	if got := out.String(); got != "one\ntwo\nthree\nfour\n" {
		t.Errorf("followed %q", got)
	}
}

// TestCopyFollowAcrossTruncate: engine.log cut in place (copy-truncate) is followed from
// its new start.
func TestCopyFollowAcrossTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "engine.log")
	os.WriteFile(path, []byte("one\ntwo\n"), 0o644)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- copyFollow(ctx, &out, &f, path, true, nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\ntwo\n" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	os.Truncate(path, 0)
	w, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	w.WriteString("x\n")
	w.Close()
	for out.String() != "one\ntwo\nx\n" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	f.Close()
	if got := out.String(); got != "one\ntwo\nx\n" {
		t.Errorf("followed %q", got)
	}
}
