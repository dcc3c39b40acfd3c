package guestagent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCapLoopFollowsWrites: capLoop cuts a log that grew past max long after its start,
// and again after the file was replaced by a new one (its watch follows the new file).
func TestCapLoopFollowsWrites(t *testing.T) {
	const max = 1 << 10
	path := filepath.Join(t.TempDir(), "engine.log")
	if err := os.WriteFile(path, []byte("start\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); capLoop(ctx, path, max, 20*time.Millisecond, slog.New(slog.DiscardHandler)) }()
	defer func() { cancel(); <-done }()

	grow := func() {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(strings.Repeat(strings.Repeat("x", 99)+"\n", 3*max/100))
		f.Close()
	}
	capped := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if st, err := os.Stat(path); err == nil && st.Size() <= max {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the log was not cut within 5 s", what)
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // idle for a while
	grow()
	capped("a write after an idle spell")

	os.Remove(path)
	time.Sleep(100 * time.Millisecond)
	grow() // a new file at the same path
	time.Sleep(100 * time.Millisecond)
	grow()
	capped("a replaced file")
}
