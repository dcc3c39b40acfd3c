package install

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/installer/internal/plist"
)

func noEnv(string) string { return "" }

func TestComputeLayout(t *testing.T) {
	env := func(m map[string]string) getenv { return func(k string) string { return m[k] } }
	tests := []struct {
		name, goos, home, prefix string
		env                      map[string]string
		want                     Layout
	}{
		{name: "linux default", goos: "linux", home: "/home/u", want: Layout{
			Prefix: "/home/u/.local", BinDir: "/home/u/.local/bin",
			Bash:    "/home/u/.local/share/bash-completion/completions/berth",
			Zsh:     "/home/u/.local/share/zsh/site-functions/_berth",
			Fish:    "/home/u/.config/fish/completions/berth.fish",
			Systemd: "/home/u/.config/systemd/user/berth.service", SystemdWants: "/home/u/.config/systemd/user/default.target.wants/berth.service",
		}},
		{name: "linux XDG dirs", goos: "linux", home: "/home/u", env: map[string]string{"XDG_DATA_HOME": "/d", "XDG_CONFIG_HOME": "/c"}, want: Layout{
			Prefix: "/home/u/.local", BinDir: "/home/u/.local/bin",
			Bash: "/d/bash-completion/completions/berth", Zsh: "/d/zsh/site-functions/_berth", Fish: "/c/fish/completions/berth.fish",
			Systemd: "/c/systemd/user/berth.service", SystemdWants: "/c/systemd/user/default.target.wants/berth.service",
		}},
		{name: "relative XDG ignored", goos: "linux", home: "/home/u", env: map[string]string{"XDG_DATA_HOME": "rel"}, want: Layout{
			Prefix: "/home/u/.local", BinDir: "/home/u/.local/bin",
			Bash:    "/home/u/.local/share/bash-completion/completions/berth",
			Zsh:     "/home/u/.local/share/zsh/site-functions/_berth",
			Fish:    "/home/u/.config/fish/completions/berth.fish",
			Systemd: "/home/u/.config/systemd/user/berth.service", SystemdWants: "/home/u/.config/systemd/user/default.target.wants/berth.service",
		}},
		{name: "explicit prefix", goos: "linux", home: "/home/u", prefix: "/usr/local/", want: Layout{
			Prefix: "/usr/local", BinDir: "/usr/local/bin",
			Bash:    "/usr/local/share/bash-completion/completions/berth",
			Zsh:     "/usr/local/share/zsh/site-functions/_berth",
			Fish:    "/usr/local/share/fish/vendor_completions.d/berth.fish",
			Systemd: "/home/u/.config/systemd/user/berth.service", SystemdWants: "/home/u/.config/systemd/user/default.target.wants/berth.service",
		}},
		{name: "darwin", goos: "darwin", home: "/Users/u", want: Layout{
			Prefix: "/Users/u/.local", BinDir: "/Users/u/.local/bin",
			Bash:    "/Users/u/.local/share/bash-completion/completions/berth",
			Zsh:     "/Users/u/.local/share/zsh/site-functions/_berth",
			Fish:    "/Users/u/.config/fish/completions/berth.fish",
			Launchd: "/Users/u/Library/LaunchAgents/dev.berth.berth.plist",
		}},
		{name: "windows", goos: "windows", home: "/Users/u", env: map[string]string{"LOCALAPPDATA": "/Users/u/AppData/Local"}, want: Layout{
			Prefix: "/Users/u/AppData/Local/Programs/Berth", BinDir: "/Users/u/AppData/Local/Programs/Berth/bin",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ComputeLayout(tt.goos, tt.home, tt.prefix, env(tt.env)); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// unitFile parses a systemd unit into section → key → values.
func unitFile(t *testing.T, s string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			sec = line[1 : len(line)-1]
			out[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || sec == "" {
				t.Fatalf("bad unit line %q", line)
			}
			out[sec][k] = append(out[sec][k], v)
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := unitFile(t, SystemdUnit("/home/u/.local/bin/berth"))
	want := map[string]string{
		"Type": "oneshot", "RemainAfterExit": "yes",
		"ExecStart": "/home/u/.local/bin/berth start", "ExecStop": "/home/u/.local/bin/berth stop",
	}
	for k, v := range want {
		if got := u["Service"][k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s = %q, want %q", k, got, v)
		}
	}
	if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "default.target" {
		t.Errorf("WantedBy = %q", got)
	}
	if u["Unit"]["Description"] == nil {
		t.Error("no Description")
	}
	// A path with a space and a percent sign is quoted and escaped for systemd.
	u = unitFile(t, SystemdUnit("/home/my user/100%/berth"))
	if got := u["Service"]["ExecStart"][0]; got != `"/home/my user/100%%/berth" start` {
		t.Errorf("quoted ExecStart = %s", got)
	}
}

func TestLaunchdPlist(t *testing.T) {
	v, err := plist.Decode(strings.NewReader(LaunchdPlist("/Users/a&b/.local/bin/berth", "/Users/a&b/.berth/login.log")))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(map[string]any)
	want := map[string]any{
		"Label":               LaunchdLabel,
		"ProgramArguments":    []any{"/Users/a&b/.local/bin/berth", "start"},
		"RunAtLoad":           true,
		"KeepAlive":           false,
		"AbandonProcessGroup": true,
		"ProcessType":         "Interactive",
		"StandardOutPath":     "/Users/a&b/.berth/login.log",
		"StandardErrorPath":   "/Users/a&b/.berth/login.log",
	}
	if !reflect.DeepEqual(d, want) {
		t.Fatalf("got %#v\nwant %#v", d, want)
	}
}

func TestWindowsRunCommand(t *testing.T) {
	if got := WindowsRunCommand(`C:\Users\A B\AppData\Local\Programs\Berth\bin\berth.exe`); got != `"C:\Users\A B\AppData\Local\Programs\Berth\bin\berth.exe" start` {
		t.Fatal(got)
	}
}

// snapshot maps every path under root to its type, mode and content hash.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Lstat(p)
		desc := st.Mode().String()
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case st.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			s := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(s[:8])
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = desc
		return nil
	})
	return out
}

func diffSnapshots(a, b map[string]string) string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var d []string
	for _, k := range keys {
		if a[k] != b[k] {
			d = append(d, fmt.Sprintf("%s: %q → %q", k, a[k], b[k]))
		}
	}
	return strings.Join(d, "\n")
}

// testHome makes a hermetic HOME for install: no BERTH_HOME, no DOCKER_CONFIG, no XDG.
func testHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	for _, k := range []string{"BERTH_HOME", "DOCKER_CONFIG", "BERTH_IMAGES", "BERTH_IMAGE_URL", "BERTH_IMAGE_SHA256", "XDG_DATA_HOME", "XDG_CONFIG_HOME"} {
		t.Setenv(k, "")
	}
	return home
}

// fakeRelease is a berth binary and a guest image outside HOME.
func fakeRelease(t *testing.T) (exe, imageRoot string) {
	dir := t.TempDir()
	exe = filepath.Join(dir, "bin", "berth")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	os.WriteFile(exe, []byte("#!/bin/sh\necho berth\n"), 0o755)
	imageRoot = filepath.Join(dir, "image")
	os.MkdirAll(filepath.Join(imageRoot, "amd64"), 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img"} {
		os.WriteFile(filepath.Join(imageRoot, "amd64", f), []byte(f+" content"), 0o644)
	}
	os.WriteFile(filepath.Join(imageRoot, "amd64", "manifest.json"), []byte(`{"arch":"amd64"}`), 0o644)
	return exe, imageRoot
}

func completions() map[string][]byte {
	return map[string][]byte{"bash": []byte("# bash\n"), "zsh": []byte("#compdef berth\n"), "fish": []byte("# fish\n")}
}

func TestInstallUninstallLeavesHomeAsItWas(t *testing.T) {
	for _, goos := range []string{"linux", "darwin"} {
		t.Run(goos, func(t *testing.T) {
			home := testHome(t)
			exe, img := fakeRelease(t)
			sockDir := t.TempDir()
			// The user's own things: a docker config whose current context will be berth,
			// another context, a tool in ~/.local/bin, a fish config.
			os.MkdirAll(filepath.Join(home, ".docker"), 0o700)
			os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{},"detachKeys":"ctrl-e,e"}`), 0o600)
			if err := dockerctx.Ensure("other", "unix:///tmp/other.sock", "someone else's"); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(home, ".local", "bin"), 0o755)
			os.WriteFile(filepath.Join(home, ".local", "bin", "tool"), []byte("x"), 0o755)
			os.MkdirAll(filepath.Join(home, ".config", "fish"), 0o755)
			os.WriteFile(filepath.Join(home, ".config", "fish", "config.fish"), []byte("set x 1\n"), 0o644)
			before := snapshot(t, home)

			opts := Options{
				Exe: exe, Version: "v9.9.9", ImageDir: img, Arch: "amd64", Completions: completions(),
				StartAtLogin: true, DockerSockLink: true, DockerSockPath: filepath.Join(sockDir, "docker.sock"),
				GOOS: goos, Getenv: noEnv,
			}
			var out bytes.Buffer
			opts.Out = &out
			res, err := Install(t.Context(), opts)
			if err != nil {
				t.Fatalf("install: %v\n%s", err, out.String())
			}
			t.Logf("install:\n%s", out.String())
			l := ComputeLayout(goos, home, "", noEnv)
			mustExist := []string{filepath.Join(l.BinDir, "berth"), l.Bash, l.Zsh, l.Fish,
				filepath.Join(home, ".berth", "_images", "amd64", "root.img"), filepath.Join(home, ".berth", "install.json")}
			if goos == "linux" {
				mustExist = append(mustExist, l.Systemd, l.SystemdWants)
			} else {
				mustExist = append(mustExist, l.Launchd)
			}
			for _, p := range mustExist {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("not installed: %v", err)
				}
			}
			if st, _ := os.Stat(filepath.Join(home, ".berth")); st.Mode().Perm() != 0o700 {
				t.Errorf("~/.berth mode %v, want 0700", st.Mode().Perm())
			}
			if h, _ := dockerctx.Host("berth"); h != "unix://"+filepath.Join(home, ".berth", "default", "docker.sock") {
				t.Errorf("docker context berth → %q", h)
			}
			if tgt, _ := os.Readlink(opts.DockerSockPath); tgt != filepath.Join(home, ".berth", "default", "docker.sock") {
				t.Errorf("docker.sock link → %q", tgt)
			}
			if res.Changed == 0 {
				t.Error("first install reports no change")
			}

			// Idempotent: the second install changes nothing, not even the record.
			installed := snapshot(t, home)
			out.Reset()
			res, err = Install(t.Context(), opts)
			if err != nil || res.Changed != 0 {
				t.Fatalf("second install: changed=%d err=%v\n%s", res.Changed, err, out.String())
			}
			if d := diffSnapshots(installed, snapshot(t, home)); d != "" {
				t.Fatalf("second install changed HOME:\n%s", d)
			}

			// The user makes berth the current context; uninstall must switch it back.
			os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{},"currentContext":"berth","detachKeys":"ctrl-e,e"}`), 0o600)

			out.Reset()
			if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
				t.Fatalf("uninstall: %v\n%s", err, out.String())
			}
			t.Logf("uninstall:\n%s", out.String())
			after := snapshot(t, home)
			cfg := filepath.Join(".docker", "config.json")
			var c map[string]any
			b, _ := os.ReadFile(filepath.Join(home, cfg))
			if err := json.Unmarshal(b, &c); err != nil || c["currentContext"] != nil || c["detachKeys"] != "ctrl-e,e" {
				t.Errorf("config.json after uninstall: %s", b)
			}
			delete(before, cfg)
			delete(after, cfg)
			if d := diffSnapshots(before, after); d != "" {
				t.Fatalf("HOME differs from before install:\n%s", d)
			}
			if _, err := os.Lstat(opts.DockerSockPath); !os.IsNotExist(err) {
				t.Errorf("docker.sock link left: %v", err)
			}
			if h, _ := dockerctx.Host("other"); h != "unix:///tmp/other.sock" {
				t.Errorf("the user's other context was touched: %q", h)
			}

			// Idempotent uninstall.
			res, err = Uninstall(t.Context(), UninstallOptions{})
			if err != nil || res.Changed != 0 {
				t.Fatalf("second uninstall: %+v %v", res, err)
			}
		})
	}
}

func TestInstallOnEmptyHomeAndUninstallData(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	opts := Options{Exe: exe, ImageDir: filepath.Join(img, "amd64"), Arch: "amd64", Completions: completions(), GOOS: "linux", Getenv: noEnv, StartAtLogin: true}
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	// An instance created after install, with its data disk.
	inst := filepath.Join(home, ".berth", "dev")
	os.MkdirAll(inst, 0o700)
	os.WriteFile(filepath.Join(inst, "berth.yaml"), nil, 0o600)
	os.WriteFile(filepath.Join(inst, "data.img"), []byte("volumes"), 0o600)

	// Without --data the instance (and so ~/.berth) stays; everything else goes.
	var out bytes.Buffer
	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, home)
	want := []string{".", ".berth", ".berth/" + store.HomeMarker, ".berth/dev", ".berth/dev/berth.yaml", ".berth/dev/data.img"}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("after uninstall: %v, want %v\n%s", keys, want, out.String())
	}
	if !strings.Contains(out.String(), "kept       ~/.berth (it holds other files)") {
		t.Errorf("output does not say ~/.berth was kept:\n%s", out.String())
	}

	// Install again, then uninstall --data: HOME is empty.
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if _, err := Uninstall(t.Context(), UninstallOptions{Data: true}); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, home); len(got) != 1 {
		t.Fatalf("HOME after uninstall --data: %v", got)
	}
}

func TestInstallRefusesForeignDockerSock(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "docker.sock")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(dir, "link.sock")
	os.Symlink("/run/other/docker.sock", link)
	for _, tt := range []struct{ path, wantErr string }{
		{file, "already exists (a file): left alone"},
		{link, "points at /run/other/docker.sock, not berth"},
	} {
		_, err := Install(t.Context(), Options{Exe: exe, ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv, DockerSockLink: true, DockerSockPath: tt.path})
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.path, err, tt.wantErr)
		}
		// Refused before anything was written.
		if got := snapshot(t, home); len(got) != 1 {
			t.Errorf("HOME changed by a refused install: %v", got)
		}
	}
	if _, err := Install(t.Context(), Options{Exe: exe, GOOS: "windows", Getenv: noEnv, DockerSockLink: true}); err == nil || !strings.Contains(err.Error(), "on Windows") {
		t.Errorf("windows: %v", err)
	}
}

func TestInstallUpdatesChangedBinary(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	opts := Options{Exe: exe, ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv}
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(exe, []byte("#!/bin/sh\necho berth v2\n"), 0o755)
	res, err := Install(t.Context(), opts)
	if err != nil || res.Changed != 1 {
		t.Fatalf("update: %+v %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, ".local", "bin", "berth")); !strings.Contains(string(b), "v2") {
		t.Fatalf("binary not updated: %s", b)
	}
	// Running the installed binary's own install: it is not copied onto itself.
	opts.Exe = filepath.Join(home, ".local", "bin", "berth")
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("self install: %+v %v", res, err)
	}
}

func TestUninstallKeepsRetargetedLink(t *testing.T) {
	testHome(t)
	exe, img := fakeRelease(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	if _, err := Install(t.Context(), Options{Exe: exe, ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv, DockerSockLink: true, DockerSockPath: sock}); err != nil {
		t.Fatal(err)
	}
	// Someone (another engine's installer) took the path over since.
	os.Remove(sock)
	os.Symlink("/run/docker-desktop.sock", sock)
	var out bytes.Buffer
	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	if tgt, _ := os.Readlink(sock); tgt != "/run/docker-desktop.sock" {
		t.Fatalf("foreign link removed or changed: %q", tgt)
	}
	if !strings.Contains(out.String(), "not berth") {
		t.Errorf("output: %s", out.String())
	}
}

func TestInstallBinaryModes(t *testing.T) {
	home := testHome(t)
	app := filepath.Join(t.TempDir(), "Berth.app", "Contents")
	cli, tray := filepath.Join(app, "Resources", "berth"), filepath.Join(app, "MacOS", "berth-tray")
	for _, p := range []string{cli, tray} {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("bin"), 0o755)
	}
	before := snapshot(t, home)
	// From an app bundle: links into the app, so an app update updates the commands.
	opts := Options{Exe: cli, Tray: tray, Binaries: BinLink, GOOS: "darwin", Getenv: noEnv}
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"berth": cli, "berth-tray": tray} {
		if got, err := os.Readlink(filepath.Join(home, ".local", "bin", name)); err != nil || got != want {
			t.Errorf("%s → %q (%v), want a link to %s", name, got, err, want)
		}
	}
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("second install: %+v %v", res, err)
	}
	if _, err := Uninstall(t.Context(), UninstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, home)); d != "" {
		t.Fatalf("HOME after uninstall:\n%s", d)
	}

	// A package's binary stays where it is.
	var out bytes.Buffer
	if _, err := Install(t.Context(), Options{Exe: "/usr/bin/berth", Binaries: BinKeep, GOOS: "linux", Getenv: noEnv, Out: &out}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(home, ".local", "bin")); !os.IsNotExist(err) {
		t.Errorf("a package's binary was copied into ~/.local/bin")
	}
	if !strings.Contains(out.String(), "using      /usr/bin/berth (installed by a package") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestInstallFromURL(t *testing.T) {
	home := testHome(t)
	exe, _ := fakeRelease(t)
	// A bundle as installer/bundle/bundle.sh makes it.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, data string }{{"vmlinuz", "k"}, {"initrd.img", "i"}, {"root.img", "r"}, {"manifest.json", `{"arch":"arm64"}`}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.data))
	}
	tw.Close()
	zw.Close()
	bundle := buf.Bytes()
	sum := sha256.Sum256(bundle)
	var mu sync.Mutex
	var got []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/b-arm64.tar.gz":
			w.Write(bundle)
		case "/b-arm64.tar.gz.sha256":
			fmt.Fprintf(w, "%s  b-arm64.tar.gz\n", hex.EncodeToString(sum[:]))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	opts := Options{Exe: exe, Arch: "arm64", ImageURL: srv.URL + "/b-{arch}.tar.gz", GOOS: "linux", Getenv: noEnv, HTTPClient: srv.Client()}

	// Refused before anything is written: no checksum (the server's .sha256 does not
	// count), a bad one, or plain http.
	for _, tt := range []struct {
		url, sum, wantErr string
	}{
		{srv.URL + "/b-{arch}.tar.gz", "", "--image-sha256"},
		{srv.URL + "/b-{arch}.tar.gz", "abc", "not a sha256"},
		{strings.Replace(srv.URL, "https://", "http://", 1) + "/b-{arch}.tar.gz", hex.EncodeToString(sum[:]), "only https:// downloads are allowed"},
	} {
		o := opts
		o.ImageURL, o.ImageSHA256 = tt.url, tt.sum
		if _, err := Install(t.Context(), o); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s sha256 %q: err = %v, want %q", tt.url, tt.sum, err, tt.wantErr)
		}
		if got := snapshot(t, home); len(got) != 1 {
			t.Fatalf("HOME changed by a refused install: %v", got)
		}
	}
	if len(got) != 0 {
		t.Fatalf("refused installs fetched %v", got)
	}

	opts.ImageSHA256 = hex.EncodeToString(sum[:])
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(home, ".berth", "_images", "arm64", "root.img")); string(b) != "r" {
		t.Fatalf("root.img = %q", b)
	}
	// Again: the checksum matches the record, nothing is fetched, nothing changes.
	mu.Lock()
	got = nil
	mu.Unlock()
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("second install: %+v %v", res, err)
	}
	if len(got) != 0 {
		t.Errorf("second install fetched %v", got)
	}
	// A plain install afterwards keeps the record of where the image came from.
	opts.ImageURL = ""
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("plain install: %+v %v", res, err)
	}
	m, _ := LoadManifest(filepath.Join(home, ".berth", "install.json"))
	if it, ok := m.find(KindImage, filepath.Join(home, ".berth", "_images", "arm64"), ""); !ok || it.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("image record %+v", it)
	}
}

// TestInstallKeepsUsersCompletions: install writes a completion file only where there is
// none or where the file is berth's (recorded, or with berth's header); the user's own
// file is kept, said so, not recorded, and so survives uninstall.
func TestInstallKeepsUsersCompletions(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	l := ComputeLayout("linux", home, "", noEnv)
	mine := []byte("# my own bash completion for berth\ncomplete -W 'start stop' berth\n")
	os.MkdirAll(filepath.Dir(l.Bash), 0o755)
	os.WriteFile(l.Bash, mine, 0o644)
	// A file an earlier berth wrote, whose record is gone: its header says it is berth's.
	os.MkdirAll(filepath.Dir(l.Fish), 0o755)
	os.WriteFile(l.Fish, withHeader("fish", []byte("# old fish\n")), 0o644)

	var out bytes.Buffer
	opts := Options{Exe: exe, ImageDir: img, Arch: "amd64", Completions: completions(), GOOS: "linux", Getenv: noEnv, Out: &out}
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(l.Bash); !bytes.Equal(b, mine) {
		t.Fatalf("the user's bash completion was overwritten:\n%s", b)
	}
	want := "kept       ~/.local/share/bash-completion/completions/berth (not berth's: left as it is; to use berth's, remove it and run berth install again, or run `berth completion bash > " + l.Bash + "`)"
	if !strings.Contains(out.String(), want) {
		t.Errorf("output does not say what it kept:\n%s", out.String())
	}
	zsh, _ := os.ReadFile(l.Zsh)
	if !strings.HasPrefix(string(zsh), "#compdef berth\n"+CompletionHeader) {
		t.Errorf("zsh completion: #compdef must stay first, then berth's header:\n%s", zsh)
	}
	if fish, _ := os.ReadFile(l.Fish); !strings.HasPrefix(string(fish), CompletionHeader) || !strings.Contains(string(fish), "# fish\n") || strings.Contains(string(fish), "old fish") {
		t.Errorf("fish completion (berth's, by its header) not replaced:\n%s", fish)
	}
	m, _ := LoadManifest(filepath.Join(home, ".berth", ManifestFile))
	if _, ok := m.find(KindFile, l.Bash, ""); ok {
		t.Error("the user's bash completion is in the install record")
	}
	for _, p := range []string{l.Zsh, l.Fish} {
		if _, ok := m.find(KindFile, p, ""); !ok {
			t.Errorf("%s not recorded", p)
		}
	}
	// Idempotent: nothing changes the second time.
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("second install: %+v %v", res, err)
	}
	// A recorded file is berth's even if it lost its header: an update replaces it.
	os.WriteFile(l.Zsh, []byte("#compdef berth\n# edited\n"), 0o644)
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 1 {
		t.Fatalf("update of a recorded completion: %+v %v", res, err)
	}

	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(l.Bash); err != nil || !bytes.Equal(b, mine) {
		t.Fatalf("uninstall touched the user's completion: %q %v", b, err)
	}
	for _, p := range []string{l.Zsh, l.Fish} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall: %v", p, err)
		}
	}
}
