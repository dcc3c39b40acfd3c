package macos

import (
	"bytes"
	"image"
	"image/png"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/berth-dev/berth/installer/internal/plist"
	"github.com/berth-dev/berth/installer/macos/icns"
)

// fakeTools puts loggers named like the macOS tools on PATH: each appends "name args" to
// the log; codesign --display prints the entitlement as the real one would.
func fakeTools(t *testing.T) (path, logf string) {
	dir := t.TempDir()
	logf = filepath.Join(dir, "log")
	for _, tool := range []string{"codesign", "hdiutil", "pkgbuild", "productbuild", "xcrun"} {
		script := "#!/bin/sh\necho \"" + tool + " $*\" >> " + logf + "\n"
		if tool == "codesign" {
			script += "case \"$*\" in *--display*) echo '<key>com.apple.security.virtualization</key>';; esac\n"
		}
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir + string(os.PathListSeparator) + "/usr/bin:/bin", logf
}

func goBinary(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	// The go command that runs the tests puts its own directory first on PATH; without it,
	// the standard location.
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		t.Skip("no go binary to generate the icon with")
	}
	return p
}

func runBundle(t *testing.T, path string, env []string, args ...string) (string, error) {
	cmd := exec.Command("./bundle.sh", args...)
	// The tools come from path only (the fakes, or none); go is named by absolute path.
	cmd.Env = append(append(withoutPath(os.Environ()), "PATH="+path, "GO="+goBinary(t)), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func withoutPath(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	return out
}

func appFiles(t *testing.T, app string) map[string]fs.FileMode {
	files := map[string]fs.FileMode{}
	filepath.WalkDir(app, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			st, _ := os.Stat(p)
			rel, _ := filepath.Rel(app, p)
			files[rel] = st.Mode().Perm()
		}
		return nil
	})
	return files
}

func TestAppBundle(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("needs /bin/sh")
	}
	if runtime.GOOS == "darwin" {
		t.Skip("macOS has the real tools in /usr/bin; this test fakes them, so it runs on other Unixes")
	}
	src := t.TempDir()
	cli, tray := filepath.Join(src, "berth"), filepath.Join(src, "berth-tray")
	os.WriteFile(cli, []byte("cli"), 0o755)
	os.WriteFile(tray, []byte("tray"), 0o755)
	images := filepath.Join(src, "image")
	os.MkdirAll(filepath.Join(images, "arm64"), 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img", "manifest.json"} {
		os.WriteFile(filepath.Join(images, "arm64", f), []byte(f), 0o600)
	}
	// The docker toolchain as make cross lays it out beside a darwin berth.
	tc := filepath.Join(src, "cross")
	os.MkdirAll(filepath.Join(tc, "cli-plugins"), 0o755)
	for _, f := range []string{"cli-plugins/docker-compose", "cli-plugins/docker-buildx", "docker"} {
		os.WriteFile(filepath.Join(tc, f), []byte(f), 0o700)
	}
	out := t.TempDir()
	path, logf := fakeTools(t)
	o, err := runBundle(t, path, []string{"BERTH_INSTALLER_IDENTITY=Developer ID Installer: Example (ABCDE12345)"},
		"--version", "v1.4.2-3-gabcdef", "--cli", cli, "--tray", tray, "--image-dir", images, "--toolchain", tc, "--out", out, "--sign", "--dmg", "--pkg")
	if err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	app := filepath.Join(out, "Berth.app")

	// Layout.
	want := map[string]fs.FileMode{
		"Contents/Info.plist":                           0o644,
		"Contents/PkgInfo":                              0o644,
		"Contents/MacOS/berth-tray":                     0o755,
		"Contents/Resources/berth":                      0o755,
		"Contents/Resources/berth.icns":                 0o644,
		"Contents/Resources/image/arm64/vmlinuz":        0o644,
		"Contents/Resources/image/arm64/initrd.img":     0o644,
		"Contents/Resources/image/arm64/root.img":       0o644,
		"Contents/Resources/image/arm64/manifest.json":  0o644,
		"Contents/Resources/cli-plugins/docker-compose": 0o755,
		"Contents/Resources/cli-plugins/docker-buildx":  0o755,
		"Contents/Resources/docker":                     0o755,
	}
	if got := appFiles(t, app); !reflect.DeepEqual(got, want) {
		t.Errorf("Berth.app files\n got %v\nwant %v", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(app, "Contents/Resources/berth")); string(b) != "cli" {
		t.Error("Resources/berth is not the CLI")
	}

	// Info.plist.
	f, err := os.Open(filepath.Join(app, "Contents/Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := plist.Decode(f)
	if err != nil {
		t.Fatalf("Info.plist: %v", err)
	}
	info := v.(map[string]any)
	for k, want := range map[string]any{
		"CFBundleIdentifier":            "dev.berth.Berth",
		"CFBundleExecutable":            "berth-tray",
		"CFBundleName":                  "Berth",
		"CFBundlePackageType":           "APPL",
		"CFBundleInfoDictionaryVersion": "6.0",
		"CFBundleIconFile":              "berth",
		"CFBundleShortVersionString":    "1.4.2",
		"CFBundleVersion":               "1.4.2",
		"BerthVersion":                  "v1.4.2-3-gabcdef",
		"LSUIElement":                   true,
		"LSMinimumSystemVersion":        "13.0",
	} {
		if info[k] != want {
			t.Errorf("Info.plist %s = %#v, want %#v", k, info[k], want)
		}
	}
	// The keys point at files that exist.
	if st, err := os.Stat(filepath.Join(app, "Contents/MacOS", info["CFBundleExecutable"].(string))); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("CFBundleExecutable is not an executable in MacOS/: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(app, "Contents/PkgInfo")); string(b) != "APPL????" {
		t.Errorf("PkgInfo %q", b)
	}

	// The icon is a valid icns whose PNGs have the sizes their types say.
	b, _ := os.ReadFile(filepath.Join(app, "Contents/Resources", info["CFBundleIconFile"].(string)+".icns"))
	entries, err := icns.Parse(b)
	if err != nil {
		t.Fatalf("berth.icns: %v", err)
	}
	sizes := map[string]int{}
	for _, tt := range icns.Types {
		sizes[tt.Type] = tt.Size
	}
	for _, e := range entries {
		img, err := png.Decode(bytes.NewReader(e.Data))
		if err != nil {
			t.Fatalf("icns %s: %v", e.Type, err)
		}
		if s := sizes[e.Type]; img.Bounds() != image.Rect(0, 0, s, s) {
			t.Errorf("icns %s is %v, want %dx%d", e.Type, img.Bounds(), s, s)
		}
	}
	if len(entries) < 4 {
		t.Errorf("icns has %d entries", len(entries))
	}

	// The tool calls: CLI signed with the entitlement, then the bundle; dmg; pkg signed.
	log, _ := os.ReadFile(logf)
	var calls []string
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !strings.HasPrefix(l, "codesign --verify") && !strings.HasPrefix(l, "codesign --display") {
			calls = append(calls, l)
		}
	}
	ent, _ := filepath.Abs("berth.entitlements")
	wantCalls := []string{
		"codesign --force --sign - " + filepath.Join(app, "Contents/Resources/cli-plugins/docker-compose"),
		"codesign --force --sign - " + filepath.Join(app, "Contents/Resources/cli-plugins/docker-buildx"),
		"codesign --force --sign - " + filepath.Join(app, "Contents/Resources/docker"),
		"codesign --force --entitlements " + ent + " --sign - " + filepath.Join(app, "Contents/Resources/berth"),
		"codesign --force --entitlements " + ent + " --sign - " + app,
		"hdiutil create -volname Berth -srcfolder <stage> -ov -format UDZO " + filepath.Join(out, "Berth-v1.4.2-3-gabcdef.dmg"),
		"pkgbuild --component " + app + " --install-location /Applications --identifier dev.berth.Berth --version 1.4.2 " + filepath.Join(out, "Berth-v1.4.2-3-gabcdef-component.pkg"),
		"productbuild --package " + filepath.Join(out, "Berth-v1.4.2-3-gabcdef-component.pkg") + " --sign Developer ID Installer: Example (ABCDE12345) " + filepath.Join(out, "Berth-v1.4.2-3-gabcdef.pkg"),
	}
	for i := range calls {
		if strings.HasPrefix(calls[i], "hdiutil create") {
			f := strings.Fields(calls[i])
			for j := range f {
				if j > 0 && f[j-1] == "-srcfolder" {
					f[j] = "<stage>"
				}
			}
			calls[i] = strings.Join(f, " ")
		}
	}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("tool calls\n got %q\nwant %q", calls, wantCalls)
	}
}

func TestAppBundleErrors(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		t.Skip("fakes the macOS tools; runs on Linux")
	}
	src := t.TempDir()
	cli := filepath.Join(src, "berth")
	os.WriteFile(cli, []byte("cli"), 0o755)
	icon := filepath.Join(src, "x.icns")
	os.WriteFile(icon, []byte("icns"), 0o644)
	base := []string{"--version", "1.0", "--cli", cli, "--tray", cli, "--out", t.TempDir(), "--icns", icon}
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{append(base, "--sign"), "codesign not found"},
		{append(base, "--dmg"), "hdiutil not found"},
		{append(base, "--pkg"), "pkgbuild not found"},
		{append(base, "--image-dir", src), "no image under"},
		{[]string{"--version", "1.0", "--cli", filepath.Join(src, "nope"), "--tray", cli, "--out", src}, "no such file"},
		{[]string{"--version", "1/0", "--cli", cli, "--tray", cli, "--out", src}, "letters, digits"},
	} {
		o, err := runBundle(t, "/usr/bin:/bin", nil, tt.args...)
		if err == nil || !strings.Contains(o, tt.wantErr) {
			t.Errorf("%v: err=%v out=%q, want %q", tt.args, err, o, tt.wantErr)
		}
	}
	// A version without a number still makes valid bundle versions.
	out := t.TempDir()
	if o, err := runBundle(t, "/usr/bin:/bin", nil, "--version", "c87cdc5-dirty", "--cli", cli, "--tray", cli, "--out", out, "--icns", icon); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	b, _ := os.ReadFile(filepath.Join(out, "Berth.app/Contents/Info.plist"))
	v, err := plist.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	info := v.(map[string]any)
	if info["CFBundleVersion"] != "0.0.0" || info["BerthVersion"] != "c87cdc5-dirty" {
		t.Errorf("versions: %v %v", info["CFBundleVersion"], info["BerthVersion"])
	}
	var keys []string
	for k := range info {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("Info.plist keys: %v", keys)
}
