//go:build darwin || linux

package localsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenClearsOnlyStaleSockets (RELIABILITY item 2): a stale socket of ours is
// replaced; a live socket, a regular file, and a symlink planted at the path (dangling,
// to a file, or to a live socket elsewhere) are refused and left as they were.
func TestListenClearsOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(dir, "elsewhere.sock")
	live, err := net.Listen("unix", elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)

	for _, tc := range []struct {
		name  string
		plant func(p string)
		want  string // "" when Listen must succeed
	}{
		{"nothing", func(string) {}, ""},
		{"stale socket", func(p string) {
			ln, _ := net.Listen("unix", p)
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
		}, ""},
		{"live socket", func(p string) {
			ln, _ := net.Listen("unix", p)
			t.Cleanup(func() { ln.Close() })
		}, "in use by another process"},
		{"regular file", func(p string) { os.WriteFile(p, []byte("x"), 0o600) }, "not a socket"},
		{"symlink to a file", func(p string) { os.Symlink(victim, p) }, "not a socket"},
		{"dangling symlink", func(p string) { os.Symlink(filepath.Join(dir, "nowhere"), p) }, "not a socket"},
		{"symlink to a live socket", func(p string) { os.Symlink(elsewhere, p) }, "not a socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "s.sock")
			tc.plant(p)
			before, _ := os.Lstat(p)
			ln, err := Listen(p)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				ln.Close()
				return
			}
			if err == nil {
				ln.Close()
				t.Fatalf("Listen succeeded over a %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
			if after, _ := os.Lstat(p); before == nil || after == nil || after.Mode() != before.Mode() {
				t.Fatalf("the %s was changed: %v → %v", tc.name, before, after)
			}
		})
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Fatalf("the symlink's target changed: %q", b)
	}
}
