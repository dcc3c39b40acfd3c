package fileshare

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	// A symlink to a directory outside the share must not be followed.
	os.Symlink(outside, filepath.Join(root, "escape"))
	batches := make(chan []Event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := Watch(ctx, []string{root}, 100, slog.New(slog.NewTextHandler(io.Discard, nil)), func(b []Event) { batches <- b })
	if err != nil {
		t.Fatal(err)
	}
	if w.Dirs() != 2 {
		t.Errorf("watching %d dirs, want 2 (root, sub; not the symlink)", w.Dirs())
	}
	next := func() map[string]string {
		t.Helper()
		select {
		case b := <-batches:
			m := map[string]string{}
			for _, e := range b {
				m[e.Path] = e.Op
			}
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("no batch")
		}
		return nil
	}
	f := filepath.Join(root, "sub", "a.txt")
	os.WriteFile(f, []byte("1"), 0o644)
	if got := next(); got[f] != "create" {
		t.Errorf("create: %v", got)
	}
	os.WriteFile(f, []byte("2"), 0o644)
	if got := next(); got[f] != "write" {
		t.Errorf("write: %v", got)
	}
	// Attribute changes (the guest's replay) produce nothing.
	now := time.Now()
	os.Chtimes(f, now, now)
	os.Remove(f)
	if got := next(); got[f] != "remove" || len(got) != 1 {
		t.Errorf("remove: %v", got)
	}
	// Changes behind the symlink are not seen.
	os.WriteFile(filepath.Join(outside, "x"), nil, 0o644)
	// A new directory is watched as it appears.
	nd := filepath.Join(root, "new")
	os.Mkdir(nd, 0o755)
	next()
	g := filepath.Join(nd, "g")
	os.WriteFile(g, nil, 0o644)
	got := next()
	if got[g] != "create" {
		t.Errorf("file in new dir: %v", got)
	}
	for p := range got {
		if filepath.Dir(p) == outside {
			t.Errorf("saw a change outside the share: %s", p)
		}
	}
}

func TestWatchCap(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b", "c"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	w, err := Watch(context.Background(), []string{root}, 2, slog.New(slog.NewTextHandler(io.Discard, nil)), func([]Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if w.Dirs() != 2 || !w.Capped() {
		t.Errorf("dirs %d capped %v", w.Dirs(), w.Capped())
	}
}

// TestWatchSwappedForSymlink: a directory replaced by a symlink right as it is watched is
// not watched (the watch would follow the link out of the share).
func TestWatchSwappedForSymlink(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	sub := filepath.Join(root, "sub")
	os.Mkdir(sub, 0o755)
	watchAdded = func(p string) {
		if p == sub {
			os.Rename(sub, sub+".old")
			os.Symlink(outside, sub)
		}
	}
	defer func() { watchAdded = func(string) {} }()
	w, err := Watch(t.Context(), []string{root}, 100, slog.New(slog.DiscardHandler), func([]Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if w.Dirs() != 1 {
		t.Errorf("watching %d dirs, want 1 (the root only)", w.Dirs())
	}
	for _, p := range w.fs.WatchList() {
		if p == sub {
			t.Errorf("%s is watched: the watch follows the link to %s", sub, outside)
		}
	}
}
