package image

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

func TestSystemDirs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	bin := filepath.Dir(exe)
	dirs := SystemDirs("arm64")
	want := []string{
		filepath.Join(filepath.Dir(bin), "share", "berth", "images", "arm64"), // /usr/bin/berth → /usr/share/berth/images
		filepath.Join(bin, "image", "arm64"),                                  // Berth.app/Contents/Resources/{berth,image}
	}
	if runtime.GOOS == "linux" {
		want = append(want, "/usr/share/berth/images/arm64")
	}
	if !slices.Equal(dirs, want) {
		t.Fatalf("SystemDirs = %v, want %v", dirs, want)
	}

	// FindSystem takes the first complete one: an image beside the (test) binary.
	beside := filepath.Join(bin, "image", "riscv-test")
	if FindSystem("riscv-test") != "" {
		t.Fatal("found an image that does not exist")
	}
	if err := os.MkdirAll(beside, 0o755); err != nil {
		t.Skipf("cannot write beside the test binary: %v", err)
	}
	defer os.RemoveAll(filepath.Join(bin, "image"))
	for _, f := range Required[:2] {
		os.WriteFile(filepath.Join(beside, f), []byte("x"), 0o644)
	}
	if FindSystem("riscv-test") != "" {
		t.Fatal("an incomplete image counts")
	}
	os.WriteFile(filepath.Join(beside, Root), []byte("x"), 0o644)
	if got := FindSystem("riscv-test"); got != beside {
		t.Fatalf("FindSystem = %q, want %q", got, beside)
	}
}
