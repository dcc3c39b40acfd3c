package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/store"
)

// testImage returns an image's files, root.img large enough (and mostly zeros, like the
// real one) that a download takes many writes, and a manifest listing their checksums.
func testImage(t *testing.T, arch string) map[string][]byte {
	t.Helper()
	root := make([]byte, 3<<20)
	copy(root[1<<20:], "ext4 superblock-ish")
	copy(root[len(root)-10:], "tail")
	files := map[string][]byte{
		Kernel: bytes.Repeat([]byte("kernel "+arch), 20000),
		Initrd: bytes.Repeat([]byte("initrd "), 10000),
		Root:   root,
	}
	m := map[string]any{"arch": arch, "kernelVersion": "6.1-test", "artifacts": map[string]Artifact{}}
	for n, b := range files {
		sum := sha256.Sum256(b)
		m["artifacts"].(map[string]Artifact)[n] = Artifact{SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
	}
	mb, _ := json.MarshalIndent(m, "", "  ")
	files[Manifest] = mb
	return files
}

func makeBundle(t *testing.T, files map[string][]byte, extra ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, n := range []string{Kernel, Initrd, Root, Manifest} {
		b, ok := files[n]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	for _, h := range extra {
		tw.WriteHeader(h)
		if h.Size > 0 {
			tw.Write(make([]byte, h.Size))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func sumHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// bundleServer serves name over https with Range support (http.ServeContent), and
// name.sha256 as a release would (Fetch must not rely on it). When dropAfter > 0 the
// first full GET is cut off after that many bytes, like a lost connection.
type bundleServer struct {
	*httptest.Server
	mu        sync.Mutex
	data      []byte
	sum       string
	dropAfter int
	requests  []string // "GET /x.tar.gz range=bytes=N-"
}

func newBundleServer(t *testing.T, name string, data []byte, sum string) *bundleServer {
	s := &bundleServer{data: data, sum: sum}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r.URL.Path+" range="+r.Header.Get("Range"))
		drop := s.dropAfter
		if r.Header.Get("Range") == "" && strings.HasSuffix(r.URL.Path, ".tar.gz") {
			s.dropAfter = 0
		} else {
			drop = 0
		}
		s.mu.Unlock()
		switch r.URL.Path {
		case "/" + name + ".sha256":
			fmt.Fprintf(w, "%s  %s\n", s.sum, name)
		case "/" + name:
			if drop > 0 {
				w.Header().Set("Content-Length", fmt.Sprint(len(s.data)))
				w.Header().Set("Accept-Ranges", "bytes")
				w.WriteHeader(http.StatusOK)
				w.Write(s.data[:drop])
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
				panic(http.ErrAbortHandler) // the connection is closed mid-body
			}
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(s.data))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

func checkInstalled(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for n, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the bundle's", n)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("leftovers beside the image: %v", leftovers)
	}
}

func TestFetchShowsProgressAndInstalls(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	const name = "berth-image-v1-amd64.tar.gz"
	srv := newBundleServer(t, name, bundle, sumHex(bundle))
	dir := t.TempDir()
	var out bytes.Buffer
	err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/berth-image-v1-{arch}.tar.gz", Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "amd64", Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files)
	if _, err := os.Stat(filepath.Join(dir, name+".part")); !os.IsNotExist(err) {
		t.Errorf(".part left behind: %v", err)
	}
	want := fmt.Sprintf("downloading %s: %s / %s (100%%)", name, humanBytes(int64(len(bundle))), humanBytes(int64(len(bundle))))
	if !strings.Contains(out.String(), want) {
		t.Errorf("progress output %q does not contain %q", out.String(), want)
	}

	// root.img is written sparse: the zeros do not take disk blocks (where the FS says so).
	if st, err := os.Stat(filepath.Join(dir, "amd64", Root)); err != nil || st.Size() != int64(len(files[Root])) {
		t.Fatalf("root.img size: %v %v", st, err)
	}
}

func TestFetchRejectsCorruptBundle(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	const name = "b-amd64.tar.gz"
	corrupt := append([]byte(nil), bundle...)
	corrupt[len(corrupt)/2] ^= 0xff
	srv := newBundleServer(t, name, corrupt, sumHex(bundle))
	dir := t.TempDir()
	// An image already installed must survive a failed update untouched.
	old := testImage(t, "amd64")
	old[Kernel] = []byte("old kernel")
	os.MkdirAll(filepath.Join(dir, "amd64"), 0o755)
	for n, b := range old {
		os.WriteFile(filepath.Join(dir, "amd64", n), b, 0o644)
	}
	err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/" + name, Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "amd64"})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("err = %v, want ErrCorrupt saying the download was deleted", err)
	}
	if _, err := os.Stat(filepath.Join(dir, name+".part")); !os.IsNotExist(err) {
		t.Errorf("corrupt download kept: %v", err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), old)
}

func TestFetchRejectsBadContent(t *testing.T) {
	files := testImage(t, "amd64")
	tests := []struct {
		name    string
		bundle  []byte
		arch    string
		wantErr string
	}{
		{name: "path escape", bundle: makeBundle(t, files, &tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}), arch: "amd64", wantErr: `unexpected entry "../evil"`},
		{name: "symlink", bundle: makeBundle(t, files, &tar.Header{Name: "x", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), arch: "amd64", wantErr: `unexpected entry "x"`},
		{name: "missing root", bundle: makeBundle(t, map[string][]byte{Kernel: files[Kernel], Initrd: files[Initrd]}), arch: "amd64", wantErr: "root.img is missing"},
		{name: "wrong arch", bundle: makeBundle(t, files), arch: "arm64", wantErr: "it is for amd64, not arm64"},
		{name: "artifact does not match manifest", bundle: func() []byte {
			f := testImage(t, "amd64")
			f[Initrd] = []byte("tampered")
			f2 := map[string][]byte{}
			for k, v := range f {
				f2[k] = v
			}
			f2[Manifest] = files[Manifest]
			return makeBundle(t, f2)
		}(), arch: "amd64", wantErr: "initrd.img is 8 bytes"},
		{name: "not gzip", bundle: []byte("hello"), arch: "amd64", wantErr: "not a gzip file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBundleServer(t, "b.tar.gz", tt.bundle, sumHex(tt.bundle))
			dir := t.TempDir()
			err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b.tar.gz", Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: tt.arch})
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrCorrupt with %q", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 0 {
				t.Fatalf("left in the images dir: %v", entries)
			}
		})
	}
}

func TestFetchResumesInterruptedDownload(t *testing.T) {
	files := testImage(t, "arm64")
	bundle := makeBundle(t, files)
	const name = "b-arm64.tar.gz"
	srv := newBundleServer(t, name, bundle, sumHex(bundle))
	half := len(bundle) / 2
	srv.dropAfter = half
	dir := t.TempDir()
	u := srv.URL + "/" + name

	// First attempt: the server drops the connection halfway; the partial file is kept.
	err := Fetch(t.Context(), FetchOptions{URL: u, Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "arm64", Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), "kept") {
		t.Fatalf("interrupted download: err = %v, want a failure that keeps the .part", err)
	}
	st, err := os.Stat(filepath.Join(dir, name+".part"))
	if err != nil || st.Size() != int64(half) {
		t.Fatalf(".part after the drop: %v, %v; want %d bytes", st, err, half)
	}

	// Second attempt: a Range request for the rest, and the image is installed.
	var out bytes.Buffer
	if err := Fetch(t.Context(), FetchOptions{URL: u, Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "arm64", Progress: &out}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(dir, "arm64"), files)
	log := srv.log()
	if last := log[len(log)-1]; last != fmt.Sprintf("/%s range=bytes=%d-", name, half) {
		t.Fatalf("second download request %q, want a Range from byte %d (all: %v)", last, half, log)
	}
	if !strings.Contains(out.String(), "resuming "+name) || !strings.Contains(out.String(), "(100%)") {
		t.Errorf("progress %q", out.String())
	}
}

func TestFetchRetriesWithinOneCall(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	srv := newBundleServer(t, "b.tar.gz", bundle, sumHex(bundle))
	srv.dropAfter = len(bundle) / 3
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b.tar.gz", Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "amd64", Progress: &out}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files)
	if !strings.Contains(out.String(), "retrying (attempt 2 of 4)") {
		t.Errorf("progress %q does not say it retried", out.String())
	}
}

func TestFetchRestartsWhenResumeJoinsDifferentFiles(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	srv := newBundleServer(t, "b.tar.gz", bundle, sumHex(bundle))
	dir := t.TempDir()
	// A stale .part from an older bundle of the same name: resuming yields a wrong sum,
	// so Fetch starts over from zero once.
	stale := bytes.Repeat([]byte{7}, 1000)
	os.WriteFile(filepath.Join(dir, "b.tar.gz.part"), stale, 0o644)
	if err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b.tar.gz", Client: srv.Client(), SHA256: srv.sum, Dir: dir, Arch: "amd64"}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files)
}

func TestFetchBadChecksumOrURL(t *testing.T) {
	srv := newBundleServer(t, "b.tar.gz", []byte("x"), sumHex([]byte("x")))
	err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b.tar.gz", Client: srv.Client(), SHA256: "nothex", Dir: t.TempDir(), Arch: "amd64"})
	if err == nil || !strings.Contains(err.Error(), "is not a sha256") {
		t.Fatalf("err = %v", err)
	}
	err = Fetch(t.Context(), FetchOptions{URL: srv.URL + "/missing.tar.gz", Client: srv.Client(), SHA256: srv.sum, Dir: t.TempDir(), Arch: "amd64", Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err = %v", err)
	}
	for _, u := range []string{"ftp://x/y.tar.gz", "http://example.com/b.tar.gz", "b.tar.gz", "https:///b.tar.gz"} {
		if err := Fetch(t.Context(), FetchOptions{URL: u, SHA256: srv.sum, Dir: t.TempDir(), Arch: "amd64"}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

// TestFetchRefusesHTTP: a plain-http bundle, or a redirect from https to http, is refused
// before anything is written, with a message that says why.
func TestFetchRefusesHTTP(t *testing.T) {
	bundle := makeBundle(t, testImage(t, "amd64"))
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/b.tar.gz":
			w.Write(bundle)
		case "/b.tar.gz.sha256":
			fmt.Fprintf(w, "%s  b.tar.gz\n", sumHex(bundle))
		}
	}))
	defer plain.Close()
	dir := t.TempDir()
	err := Fetch(t.Context(), FetchOptions{URL: plain.URL + "/b.tar.gz", Client: plain.Client(), SHA256: sumHex(bundle), Dir: dir, Arch: "amd64"})
	if err == nil || !strings.Contains(err.Error(), "only https:// downloads are allowed") {
		t.Fatalf("http:// bundle: err = %v", err)
	}
	redirect := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/b.tar.gz", http.StatusFound))
	defer redirect.Close()
	err = Fetch(t.Context(), FetchOptions{URL: redirect.URL + "/b.tar.gz", Client: redirect.Client(), SHA256: sumHex(bundle), Dir: dir, Arch: "amd64", Attempts: 1})
	if err == nil || !strings.Contains(err.Error(), "refusing a redirect to http://") {
		t.Fatalf("redirect to http: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "amd64")); !os.IsNotExist(err) {
		t.Fatalf("an image was installed: %v", err)
	}
}

// TestFetchChecksumSource: the expected sha256 is the given one, else the one built into
// berth; the server's own .sha256 is never what the bundle is checked against.
func TestFetchChecksumSource(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	// A server that replaced the bundle and its .sha256 together.
	evil := makeBundle(t, testImage(t, "amd64"), &tar.Header{Name: "rootfs.tar", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1})
	srv := newBundleServer(t, "b-amd64.tar.gz", evil, sumHex(evil))
	srv.sum = sumHex(evil) // what the server's .sha256 says

	old := BundleSHA256
	t.Cleanup(func() { BundleSHA256 = old })

	// No checksum given, none built in: refused before downloading, saying how to pass one.
	BundleSHA256 = ""
	err := Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b-{arch}.tar.gz", Client: srv.Client(), Dir: t.TempDir(), Arch: "amd64"})
	if err == nil || !strings.Contains(err.Error(), "--image-sha256") || !strings.Contains(err.Error(), EnvSHA256) {
		t.Fatalf("without a checksum: err = %v", err)
	}
	if n := len(srv.log()); n != 0 {
		t.Fatalf("fetched %v without a checksum to check against", srv.log())
	}

	// Built in for this arch (and another): the server's bundle does not match it.
	BundleSHA256 = "arm64=" + strings.Repeat("0", 64) + ",amd64=" + sumHex(bundle)
	if got := BuiltinSHA256("amd64"); got != sumHex(bundle) {
		t.Fatalf("BuiltinSHA256(amd64) = %q", got)
	}
	dir := t.TempDir()
	err = Fetch(t.Context(), FetchOptions{URL: srv.URL + "/b-{arch}.tar.gz", Client: srv.Client(), Dir: dir, Arch: "amd64"})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "expected "+sumHex(bundle)) {
		t.Fatalf("replaced bundle: err = %v, want ErrCorrupt against the built-in sum", err)
	}
	for _, r := range srv.log() {
		if strings.Contains(r, ".sha256") {
			t.Fatalf("fetched the server's checksum: %v", srv.log())
		}
	}
	// The genuine bundle passes the built-in checksum.
	good := newBundleServer(t, "b-amd64.tar.gz", bundle, "")
	if err := Fetch(t.Context(), FetchOptions{URL: good.URL + "/b-{arch}.tar.gz", Client: good.Client(), Dir: dir, Arch: "amd64"}); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files)
}

func TestEnsureForDownloadsOnlyWhenMissing(t *testing.T) {
	files := testImage(t, "amd64")
	bundle := makeBundle(t, files)
	srv := newBundleServer(t, "img-amd64.tar.gz", bundle, sumHex(bundle))
	old := defaultClient
	defaultClient = srv.Client()
	t.Cleanup(func() { defaultClient = old })
	t.Setenv(EnvSHA256, srv.sum)
	home := t.TempDir()
	t.Setenv("BERTH_HOME", home)
	t.Setenv("BERTH_IMAGES", "")
	cfg := store.DefaultConfig()
	cfg.Arch = "amd64"

	t.Setenv(EnvURL, "")
	if err := EnsureFor(t.Context(), cfg, &bytes.Buffer{}); err != nil || len(srv.log()) != 0 {
		t.Fatalf("without a URL: err=%v requests=%v", err, srv.log())
	}
	t.Setenv(EnvURL, srv.URL+"/img-{arch}.tar.gz")
	var out bytes.Buffer
	if err := EnsureFor(t.Context(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, filepath.Join(home, "_images", "amd64"), files)
	if !strings.Contains(out.String(), "No guest image for amd64") {
		t.Errorf("output %q", out.String())
	}
	n := len(srv.log())
	if err := EnsureFor(t.Context(), cfg, &out); err != nil || len(srv.log()) != n {
		t.Fatalf("second EnsureFor downloaded again: %v %v", err, srv.log())
	}
	// An explicit images dir is the user's choice: no download.
	cfg.Arch = "arm64"
	cfg.Images = t.TempDir()
	if err := EnsureFor(t.Context(), cfg, &out); err != nil || len(srv.log()) != n {
		t.Fatalf("with images set: %v %v", err, srv.log())
	}
}

func TestInstallFrom(t *testing.T) {
	files := testImage(t, "amd64")
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "amd64"), 0o755)
	for n, b := range files {
		os.WriteFile(filepath.Join(src, "amd64", n), b, 0o644)
	}
	dir := filepath.Join(t.TempDir(), "_images")
	// The root holding <arch>/ and the arch dir itself are both accepted.
	changed, err := InstallFrom(src, dir, "amd64")
	if err != nil || !changed {
		t.Fatalf("first install: %v %v", changed, err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files)
	changed, err = InstallFrom(filepath.Join(src, "amd64"), dir, "amd64")
	if err != nil || changed {
		t.Fatalf("second install: changed=%v err=%v, want unchanged", changed, err)
	}
	if _, err := InstallFrom(src, dir, "arm64"); err == nil || !strings.Contains(err.Error(), "no guest image for arm64") {
		t.Fatalf("wrong arch: %v", err)
	}
	// An update replaces the image as a whole.
	files2 := testImage(t, "amd64")
	files2[Kernel] = []byte("new kernel")
	sum := sha256.Sum256(files2[Kernel])
	var m map[string]any
	json.Unmarshal(files2[Manifest], &m)
	m["artifacts"].(map[string]any)[Kernel] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "size": len(files2[Kernel])}
	files2[Manifest], _ = json.Marshal(m)
	for n, b := range files2 {
		os.WriteFile(filepath.Join(src, "amd64", n), b, 0o644)
	}
	if changed, err := InstallFrom(src, dir, "amd64"); err != nil || !changed {
		t.Fatalf("update: %v %v", changed, err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files2)
	// A damaged source (content contradicting its manifest) is refused; the installed one stays.
	os.WriteFile(filepath.Join(src, "amd64", Kernel), []byte("newer kernel"), 0o644)
	if _, err := InstallFrom(src, dir, "amd64"); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("damaged source: %v", err)
	}
	checkInstalled(t, filepath.Join(dir, "amd64"), files2)
}

func TestParseContentRange(t *testing.T) {
	for _, tt := range []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 5-9/*", 5, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
	} {
		s, n, ok := parseContentRange(tt.in)
		if s != tt.start || n != tt.size || ok != tt.ok {
			t.Errorf("%q: %d %d %v", tt.in, s, n, ok)
		}
	}
}
