// Package bundle holds the image bundle recipe (bundle.sh); this test runs it on a small
// fake image and installs the result through host/image, as berth start would.
package bundle

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/image"
)

func fakeImage(t *testing.T, arch string) string {
	dir := filepath.Join(t.TempDir(), arch)
	os.MkdirAll(dir, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img"} {
		os.WriteFile(filepath.Join(dir, f), []byte(strings.Repeat(f, 1000)), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(fmt.Sprintf(`{"arch": "%s", "artifacts": {}}`, arch)), 0o644)
	// The build leaves stamps beside the artifacts: they must not be packed.
	os.WriteFile(filepath.Join(dir, ".vmlinuz.stamp"), []byte("x"), 0o644)
	return dir
}

func run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("./bundle.sh", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestBundle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("bundle.sh runs where images are built (GNU tar)")
	}
	img := fakeImage(t, "arm64")
	out := t.TempDir()
	epoch := []string{"SOURCE_DATE_EPOCH=1700000000"}
	if o, err := run(t, epoch, "--arch", "arm64", "--version", "v1.2.3", "--image", img, "--out", out); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	name := "berth-image-v1.2.3-arm64.tar.gz"
	bundle := filepath.Join(out, name)
	data, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	sumLine, _ := os.ReadFile(bundle + ".sha256")
	if want := hex.EncodeToString(sum[:]) + "  " + name + "\n"; string(sumLine) != want {
		t.Fatalf(".sha256 = %q, want %q", sumLine, want)
	}
	// sha256sum -c accepts it.
	if o, err := exec.Command("sh", "-c", "cd "+out+" && sha256sum -c "+name+".sha256").CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v %s", err, o)
	}

	zr, err := gzip.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: type %c mode %o owner %d:%d mtime %v", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime)
		}
	}
	if want := []string{"vmlinuz", "initrd.img", "root.img", "manifest.json"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("bundle holds %v, want %v", names, want)
	}

	// Up to date: not rebuilt. Rebuilt after a change, and reproducible byte for byte.
	if o, _ := run(t, epoch, "--arch", "arm64", "--version", "v1.2.3", "--image", img, "--out", out); !strings.Contains(o, "up to date") {
		t.Errorf("second run: %s", o)
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(img, "root.img"), future, future)
	if o, err := run(t, epoch, "--arch", "arm64", "--version", "v1.2.3", "--image", img, "--out", out); err != nil || strings.Contains(o, "up to date") {
		t.Fatalf("rebuild: %v %s", err, o)
	}
	again, _ := os.ReadFile(bundle)
	if string(again) != string(data) {
		t.Error("the same inputs gave a different bundle")
	}

	// The bundle installs through host/image from an https server, as berth start does,
	// checked against its .sha256 baked into berth as the Makefile does it
	// (-X host/image.BundleSHA256=arm64=HEX).
	sumFile, err := os.ReadFile(bundle + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	old := image.BundleSHA256
	image.BundleSHA256 = "arm64=" + strings.Fields(string(sumFile))[0]
	t.Cleanup(func() { image.BundleSHA256 = old })
	srv := httptest.NewTLSServer(http.FileServer(http.Dir(out)))
	defer srv.Close()
	images := t.TempDir()
	if err := image.Fetch(t.Context(), image.FetchOptions{URL: srv.URL + "/berth-image-v1.2.3-{arch}.tar.gz", Client: srv.Client(), Dir: images, Arch: "arm64"}); err != nil {
		t.Fatal(err)
	}
	if !image.Same(img, filepath.Join(images, "arm64")) {
		t.Fatal("the installed image differs from the bundled one")
	}
}

func TestBundleRefusesBadInput(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("bundle.sh runs where images are built (GNU tar)")
	}
	img := fakeImage(t, "amd64")
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"--arch", "arm64", "--version", "v1", "--image", img, "--out", t.TempDir()}, "is not for arm64"},
		{[]string{"--arch", "amd64", "--version", "v1/../x", "--image", img, "--out", t.TempDir()}, "letters, digits"},
		{[]string{"--arch", "riscv", "--version", "v1", "--image", img, "--out", t.TempDir()}, "want amd64 or arm64"},
		{[]string{"--arch", "amd64", "--version", "v1", "--image", t.TempDir(), "--out", t.TempDir()}, "vmlinuz is missing"},
		{[]string{"--arch", "amd64"}, "usage"},
	} {
		o, err := run(t, nil, tt.args...)
		if err == nil || !strings.Contains(o, tt.wantErr) {
			t.Errorf("%v: err=%v out=%q, want %q", tt.args, err, o, tt.wantErr)
		}
	}
}
