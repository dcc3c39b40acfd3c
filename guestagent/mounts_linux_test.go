//go:build linux

package guestagent

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(testMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 8 || ms[2] != (mountEntry{"/var/lib/berth", "ext4", "/dev/vdb"}) || ms[5].MountPoint != "/Users/me/My Projects" {
		t.Fatalf("got %+v", ms)
	}
	var order []string
	for _, m := range unmountOrder(ms) {
		order = append(order, m.MountPoint)
	}
	want := []string{"/run/docker/netns/xyz", "/var/lib/docker/overlay2/abc/merged", "/Users/me/My Projects",
		"/var/lib/containerd", "/var/lib/docker", "/var/lib/berth"}
	if !reflect.DeepEqual(order, want) {
		t.Fatalf("unmount order %q, want %q", order, want)
	}
	if _, err := parseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Fatal("malformed mountinfo accepted")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`a\040b`: "a b", `tab\011`: "tab\t", `back\134slash`: `back\slash`, `end\04`: `end\04`, "plain": "plain"} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoveSameDev(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "init"), []byte("x"), 0o755)
	os.Symlink("/nowhere", filepath.Join(dir, "link"))
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	// Another device number removes nothing.
	if n := removeSameDev(dir, st.Dev+1); n != 0 {
		t.Fatalf("removed %d entries of another device", n)
	}
	if n := removeSameDev(dir, st.Dev); n != 5 {
		t.Fatalf("removed %d entries, want 5", n)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left %v", ents)
	}
}
