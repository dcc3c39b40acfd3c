package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fuzz targets for what berth reads from a downloaded bundle and an image directory: the
// bundle (gzip, tar), its manifest.json, and the server's Content-Range.

// tarGz builds a bundle from name → content pairs.
func tarGz(tb testing.TB, files ...string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// FuzzExtract: whatever the bundle holds, extract writes nothing outside <dir>/<arch>, and
// what it installs is a complete image.
func FuzzExtract(f *testing.F) {
	f.Add(tarGz(f, Kernel, "k", Initrd, "i", Root, "r"))
	f.Add(tarGz(f, "./"+Kernel, "k", Initrd, "i", Root, strings.Repeat("\x00", 70<<10)+"r",
		Manifest, `{"arch":"amd64","artifacts":{"vmlinuz":{"sha256":"8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a","size":1}}}`))
	f.Add(tarGz(f, Kernel, "k", Initrd, "i", Root, "r", Manifest, `{"arch":"arm64"}`))
	f.Add(tarGz(f, "../"+Kernel, "k", Initrd, "i", Root, "r"))
	f.Add(tarGz(f, Kernel, "k", Kernel, "k"))
	f.Add([]byte("\x1f\x8b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tmp := t.TempDir()
		bundle := filepath.Join(tmp, "bundle.tar.gz")
		if err := os.WriteFile(bundle, b, 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, "images")
		err := extract(bundle, dir, "amd64")
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "amd64" {
				t.Fatalf("extract left %s in the images directory (err %v)", e.Name(), err)
			}
		}
		if err != nil {
			if _, serr := os.Stat(filepath.Join(dir, "amd64")); serr == nil {
				t.Fatalf("extract failed (%v) but installed an image", err)
			}
			return
		}
		if !Complete(filepath.Join(dir, "amd64")) {
			t.Fatal("extract succeeded with an incomplete image")
		}
		files, _ := os.ReadDir(filepath.Join(dir, "amd64"))
		for _, e := range files {
			if !known[e.Name()] || !e.Type().IsRegular() {
				t.Fatalf("extract installed %s (%v)", e.Name(), e.Type())
			}
		}
	})
}

// FuzzVerifyManifest: a manifest.json of any content is either refused or describes the
// files as they are.
func FuzzVerifyManifest(f *testing.F) {
	f.Add([]byte(`{"arch":"amd64","artifacts":{"vmlinuz":{"sha256":"8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a","size":1}}}`))
	f.Add([]byte(`{"artifacts":{"../../etc/passwd":{"size":1},"root.img":{"size":-1}}}`))
	f.Add([]byte(`{"arch":"arm64"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		for _, n := range Required {
			if err := os.WriteFile(filepath.Join(dir, n), []byte("k"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, Manifest), b, 0o644); err != nil {
			t.Fatal(err)
		}
		err := verifyDir(dir, "amd64")
		m, merr := ReadManifest(dir)
		if merr != nil {
			if err == nil {
				t.Fatalf("verified a directory whose manifest does not parse: %v", merr)
			}
			return
		}
		if err == nil && m.Arch != "" && m.Arch != "amd64" {
			t.Fatalf("verified an image for %q as amd64", m.Arch)
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 100-199/200")
	f.Add("bytes 0-0/*")
	f.Add("bytes 0-1/-5")
	f.Add("bytes -1-2/3")
	f.Add("bytes +7-8/+9")
	f.Fuzz(func(t *testing.T, s string) {
		start, size, ok := parseContentRange(s)
		if ok && (start < 0 || size < -1) {
			t.Fatalf("parseContentRange(%q) = %d, %d", s, start, size)
		}
	})
}
