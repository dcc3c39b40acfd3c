//go:build !windows

package install

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pluginScript is a docker CLI plugin that answers the CLI's metadata call with version.
func pluginScript(version string) []byte {
	return []byte("#!/bin/sh\n[ \"$1\" = docker-cli-plugin-metadata ] && echo '{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"Docker Inc.\",\"Version\":\"" + version + "\"}'\n")
}

// dockerScript is a docker CLI that answers --version.
func dockerScript(version string) []byte {
	return []byte("#!/bin/sh\n[ \"$1\" = --version ] && echo 'Docker version " + version + ", build 0000000'\n")
}

// fakeToolchain puts berth's toolchain in dir/rel (beside the binary, or ../lib/berth).
func fakeToolchain(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "cli-plugins"), 0o755)
	os.WriteFile(filepath.Join(dir, "cli-plugins", "docker-compose"), pluginScript("v5.6.0"), 0o755)
	os.WriteFile(filepath.Join(dir, "cli-plugins", "docker-buildx"), pluginScript("v0.38.2"), 0o755)
	os.WriteFile(filepath.Join(dir, "docker"), dockerScript("29.10.0"), 0o755)
}

func manifestPaths(t *testing.T, home string) map[string]string {
	t.Helper()
	m, err := LoadManifest(filepath.Join(home, ".berth", ManifestFile))
	if err != nil || m == nil {
		t.Fatalf("install record: %v", err)
	}
	out := map[string]string{}
	for _, it := range m.Items {
		if it.Path != "" {
			out[it.Path] = it.Kind
		}
	}
	return out
}

func TestInstallToolchainOnEmptyHome(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	fakeToolchain(t, filepath.Dir(exe))
	before := snapshot(t, home)
	opts := Options{Exe: exe, Version: "v9.9.9", ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv}
	var out bytes.Buffer
	opts.Out = &out
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	t.Logf("install:\n%s", out.String())
	plugins := filepath.Join(home, ".docker", "cli-plugins")
	l := ComputeLayout("linux", home, "", noEnv)
	want := map[string]string{
		filepath.Join(plugins, "docker-compose"): filepath.Join(filepath.Dir(exe), "cli-plugins", "docker-compose"),
		filepath.Join(plugins, "docker-buildx"):  filepath.Join(filepath.Dir(exe), "cli-plugins", "docker-buildx"),
		// No docker on the PATH: berth's goes into the prefix.
		filepath.Join(l.BinDir, "docker"): filepath.Join(filepath.Dir(exe), "docker"),
	}
	rec := manifestPaths(t, home)
	for dst, src := range want {
		got, err := os.ReadFile(dst)
		wantB, _ := os.ReadFile(src)
		if err != nil || !bytes.Equal(got, wantB) {
			t.Errorf("%s: %v (want a copy of %s)", dst, err, src)
		}
		if st, err := os.Stat(dst); err == nil && st.Mode().Perm() != 0o755 {
			t.Errorf("%s mode %v, want 0755", dst, st.Mode().Perm())
		}
		if rec[dst] != KindFile {
			t.Errorf("%s not in the install record (%q)", dst, rec[dst])
		}
	}
	// ~/.docker did not exist: install created it, and the record says so.
	if rec[filepath.Join(home, ".docker")] != KindDir || rec[plugins] != KindDir {
		t.Errorf("created directories not recorded: %v", rec)
	}

	// A changed toolchain (a new berth with newer plugins) replaces berth's own copies.
	os.WriteFile(filepath.Join(filepath.Dir(exe), "cli-plugins", "docker-compose"), pluginScript("v5.7.0"), 0o755)
	out.Reset()
	if res, err := Install(t.Context(), opts); err != nil || res.Changed == 0 {
		t.Fatalf("reinstall: changed=%d %v\n%s", res.Changed, err, out.String())
	}
	if v := toolVersion(t.Context(), filepath.Join(plugins, "docker-compose"), true); v != "v5.7.0" {
		t.Errorf("updated plugin reports %q, want v5.7.0", v)
	}

	out.Reset()
	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out.String())
	}
	if d := diffSnapshots(before, snapshot(t, home)); d != "" {
		t.Fatalf("HOME differs from before install:\n%s", d)
	}
}

// A user's own plugin and docker CLI stay exactly as they were, through install and
// uninstall, and install says what it found and how to let berth manage it.
func TestInstallToolchainKeepsUsersPluginAndCLI(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	fakeToolchain(t, filepath.Dir(exe))
	plugins := filepath.Join(home, ".docker", "cli-plugins")
	os.MkdirAll(plugins, 0o755)
	os.WriteFile(filepath.Join(plugins, "docker-compose"), pluginScript("v2.29.7"), 0o755)
	usrBin := t.TempDir()
	os.WriteFile(filepath.Join(usrBin, "docker"), dockerScript("28.2.2"), 0o755)
	env := func(k string) string {
		if k == "PATH" {
			return usrBin
		}
		return ""
	}
	before := snapshot(t, home)

	opts := Options{Exe: exe, Version: "v9.9.9", ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: env}
	var out bytes.Buffer
	opts.Out = &out
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	msg := out.String()
	t.Logf("install:\n%s", msg)
	for _, want := range []string{
		"kept       ~/.docker/cli-plugins/docker-compose (v2.29.7, not berth's",
		"To let berth manage it, remove it and run berth install again",
		"using      " + filepath.Join(usrBin, "docker") + " (docker 28.2.2, not berth's",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("install output lacks %q", want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(plugins, "docker-compose")); !bytes.Equal(b, pluginScript("v2.29.7")) {
		t.Error("the user's docker-compose was replaced")
	}
	if v := toolVersion(t.Context(), filepath.Join(plugins, "docker-buildx"), true); v != "v0.38.2" {
		t.Errorf("berth's docker-buildx not installed beside the user's compose: %q", v)
	}
	l := ComputeLayout("linux", home, "", noEnv)
	if _, err := os.Lstat(filepath.Join(l.BinDir, "docker")); err == nil {
		t.Error("berth's docker CLI installed although one is on the PATH")
	}
	rec := manifestPaths(t, home)
	if _, ok := rec[filepath.Join(plugins, "docker-compose")]; ok {
		t.Error("the user's docker-compose is in berth's install record")
	}
	if _, ok := rec[plugins]; ok {
		t.Error("the user's plugin directory is in berth's install record")
	}

	// A second install keeps it too (and changes nothing).
	out.Reset()
	if res, err := Install(t.Context(), opts); err != nil || res.Changed != 0 {
		t.Fatalf("second install: changed=%d %v\n%s", res.Changed, err, out.String())
	}

	out.Reset()
	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out.String())
	}
	t.Logf("uninstall:\n%s", out.String())
	if d := diffSnapshots(before, snapshot(t, home)); d != "" {
		t.Fatalf("HOME differs from before install:\n%s", d)
	}
}

// A package's toolchain (/usr/bin/berth with /usr/lib/berth/...) is linked, not copied, so a
// package update updates the plugins too.
func TestInstallToolchainFromPackageLinks(t *testing.T) {
	home := testHome(t)
	exe, img := fakeRelease(t)
	lib := filepath.Join(filepath.Dir(exe), "..", "lib", "berth")
	fakeToolchain(t, lib)
	before := snapshot(t, home)
	opts := Options{Exe: exe, Binaries: BinKeep, Version: "v9.9.9", ImageDir: img, Arch: "amd64", GOOS: "linux", Getenv: noEnv}
	var out bytes.Buffer
	opts.Out = &out
	if _, err := Install(t.Context(), opts); err != nil {
		t.Fatalf("install: %v\n%s", err, out.String())
	}
	for _, p := range []string{"docker-compose", "docker-buildx"} {
		dst := filepath.Join(home, ".docker", "cli-plugins", p)
		if tgt, err := os.Readlink(dst); err != nil || tgt != filepath.Join(filepath.Clean(lib), "cli-plugins", p) {
			t.Errorf("%s → %q, %v", dst, tgt, err)
		}
	}
	if _, err := Uninstall(t.Context(), UninstallOptions{Out: &out}); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out.String())
	}
	if d := diffSnapshots(before, snapshot(t, home)); d != "" {
		t.Fatalf("HOME differs from before install:\n%s", d)
	}
}

func TestToolVersionParses(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "docker")
	os.WriteFile(p, dockerScript("29.10.0"), 0o755)
	if v := toolVersion(t.Context(), p, false); v != "29.10.0" {
		t.Errorf("docker --version → %q", v)
	}
	os.WriteFile(p, []byte("#!/bin/sh\nexit 1\n"), 0o755)
	if v := toolVersion(t.Context(), p, true); v != "" {
		t.Errorf("a failing plugin → %q", v)
	}
	var meta map[string]string
	if err := json.Unmarshal([]byte(strings.Split(string(pluginScript("v1")), "'")[1]), &meta); err != nil || meta["Version"] != "v1" {
		t.Errorf("pluginScript metadata: %v %v", meta, err)
	}
}
