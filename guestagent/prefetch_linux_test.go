package guestagent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestPrefetch: regular files matched by the globs are asked for, whole; directories and
// globs that match nothing are skipped.
func TestPrefetch(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int{"a.so": 3000, "b.so": 5000, "c.txt": 7} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(dir, "d.so"), 0o755)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	got := prefetch(log, []string{filepath.Join(dir, "*.so"), filepath.Join(dir, "missing"), filepath.Join(dir, "c.txt")})
	if got != 8007 {
		t.Fatalf("prefetched %d bytes, want 8007", got)
	}
}
