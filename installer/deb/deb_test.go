// Package deb holds the Debian package recipe (build.sh); this test builds a package from
// a fake berth and image and checks its contents and control file. Installing a real one
// with dpkg is the e2e test TestInstallDeb (test/e2e/install_test.go).
package deb

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/berth-dev/berth/installer/install"
)

// fakeBerth answers `completion SHELL` and `version` like the real one.
const fakeBerth = `#!/bin/sh
case "$1" in
completion) echo "# $2 completion for berth" ;;
version) echo "berth fake" ;;
*) exit 1 ;;
esac
`

func setup(t *testing.T) (bin, images string) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not found")
	}
	dir := t.TempDir()
	bin = filepath.Join(dir, "berth")
	os.WriteFile(bin, []byte(fakeBerth), 0o755)
	images = filepath.Join(dir, "image")
	for _, a := range []string{"amd64", "arm64"} {
		os.MkdirAll(filepath.Join(images, a), 0o755)
		for _, f := range []string{"vmlinuz", "initrd.img", "root.img"} {
			os.WriteFile(filepath.Join(images, a, f), []byte(f), 0o600)
		}
		os.WriteFile(filepath.Join(images, a, "manifest.json"), []byte(fmt.Sprintf(`{"arch": "%s"}`, a)), 0o644)
	}
	return bin, images
}

func build(t *testing.T, args ...string) (string, error) {
	cmd := exec.Command("./build.sh", args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func debContents(t *testing.T, deb string) map[string]string {
	out, err := exec.Command("dpkg-deb", "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		files[strings.TrimPrefix(f[len(f)-1], ".")] = f[0] + " " + f[1]
	}
	return files
}

func TestDebPackage(t *testing.T) {
	bin, images := setup(t)
	out := t.TempDir()
	// The docker toolchain as `make build` lays it out beside berth.
	tc := t.TempDir()
	os.MkdirAll(filepath.Join(tc, "cli-plugins"), 0o755)
	for _, f := range []string{"cli-plugins/docker-compose", "cli-plugins/docker-buildx", "docker"} {
		os.WriteFile(filepath.Join(tc, f), []byte("#!/bin/sh\n"), 0o755)
	}
	if o, err := build(t, "--version", "v1.2.3-4-gabcdef", "--arch", "amd64", "--bin", bin, "--tray", bin,
		"--image-dir", images, "--toolchain", tc, "--out", out, "--compression", "none"); err != nil {
		t.Fatalf("%v\n%s", err, o)
	}
	deb := filepath.Join(out, "berth_1.2.3+4+gabcdef_amd64.deb")
	files := debContents(t, deb)
	want := map[string]string{
		"/usr/bin/berth":                                  "-rwxr-xr-x root/root",
		"/usr/bin/berth-tray":                             "-rwxr-xr-x root/root",
		"/usr/share/berth/images/amd64/vmlinuz":           "-rw-r--r-- root/root",
		"/usr/share/berth/images/amd64/initrd.img":        "-rw-r--r-- root/root",
		"/usr/share/berth/images/amd64/root.img":          "-rw-r--r-- root/root",
		"/usr/share/berth/images/amd64/manifest.json":     "-rw-r--r-- root/root",
		"/usr/share/bash-completion/completions/berth":    "-rw-r--r-- root/root",
		"/usr/share/zsh/vendor-completions/_berth":        "-rw-r--r-- root/root",
		"/usr/share/fish/vendor_completions.d/berth.fish": "-rw-r--r-- root/root",
		"/usr/lib/systemd/user/berth.service":             "-rw-r--r-- root/root",
		"/usr/share/doc/berth/README.md":                  "-rw-r--r-- root/root",
		"/usr/lib/berth/cli-plugins/docker-compose":       "-rwxr-xr-x root/root",
		"/usr/lib/berth/cli-plugins/docker-buildx":        "-rwxr-xr-x root/root",
		"/usr/lib/berth/docker":                           "-rwxr-xr-x root/root",
	}
	// berth, run from /usr/bin, finds the toolchain where the package puts it.
	found := false
	for _, rel := range install.ToolchainDirs {
		found = found || filepath.Join("/usr/bin", rel) == "/usr/lib/berth"
	}
	if !found {
		t.Errorf("install.ToolchainDirs %v does not lead from /usr/bin to /usr/lib/berth", install.ToolchainDirs)
	}
	var gotFiles []string
	for p, m := range files {
		if !strings.HasPrefix(m, "d") {
			gotFiles = append(gotFiles, p)
			if want[p] != m {
				t.Errorf("%s: %s, want %s", p, m, want[p])
			}
		} else if m != "drwxr-xr-x root/root" {
			t.Errorf("dir %s: %s", p, m)
		}
	}
	var wantFiles []string
	for p := range want {
		wantFiles = append(wantFiles, p)
	}
	sort.Strings(gotFiles)
	sort.Strings(wantFiles)
	if !reflect.DeepEqual(gotFiles, wantFiles) {
		t.Errorf("files\n got %v\nwant %v", gotFiles, wantFiles)
	}

	field := func(name string) string {
		b, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	for k, v := range map[string]string{
		"Package": "berth", "Version": "1.2.3+4+gabcdef", "Architecture": "amd64",
		// The (fake) tray is no ELF file dpkg-shlibdeps can read: the fallback list.
		"Depends": "qemu-system-x86, libc6, libgl1, libx11-6", "Section": "admin",
	} {
		if got := field(k); got != v {
			t.Errorf("control %s = %q, want %q", k, got, v)
		}
	}
	if field("Installed-Size") == "" || field("Maintainer") == "" || field("Description") == "" {
		t.Error("control lacks Installed-Size, Maintainer or Description")
	}

	// The packaged unit is the one `berth install --start-at-login` writes.
	x := t.TempDir()
	if o, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, o)
	}
	unit, _ := os.ReadFile(filepath.Join(x, "usr/lib/systemd/user/berth.service"))
	if string(unit) != install.SystemdUnit("/usr/bin/berth") {
		t.Errorf("packaged unit differs from install.SystemdUnit:\n%s", unit)
	}
	if b, _ := os.ReadFile(filepath.Join(x, "usr/share/zsh/vendor-completions/_berth")); string(b) != "# zsh completion for berth\n" {
		t.Errorf("zsh completion = %q", b)
	}
	// md5sums covers every file.
	sums, err := exec.Command("sh", "-c", "dpkg-deb --ctrl-tarfile "+deb+" | tar -xOf - ./md5sums").Output()
	if err != nil || strings.Count(string(sums), "\n") != len(want) {
		t.Errorf("md5sums (%v):\n%s", err, sums)
	}
}

func TestDebVersionsAndDepends(t *testing.T) {
	bin, images := setup(t)
	for _, tt := range []struct {
		version, arch, imageArches, file, depends string
	}{
		{"d4c7c3f-dirty", "arm64", "arm64", "berth_0~d4c7c3f+dirty_arm64.deb", "qemu-system-arm"},
		{"v2.0.0", "amd64", "amd64 arm64", "berth_2.0.0_amd64.deb", "qemu-system-x86, qemu-system-arm"},
		{"1.0", "amd64", "", "berth_1.0_amd64.deb", "qemu-system-x86 | qemu-system-arm"},
	} {
		out := t.TempDir()
		args := []string{"--version", tt.version, "--arch", tt.arch, "--bin", bin, "--out", out, "--compression", "none"}
		if tt.imageArches != "" {
			args = append(args, "--image-dir", images, "--image-arches", tt.imageArches)
		}
		if o, err := build(t, args...); err != nil {
			t.Fatalf("%v: %v\n%s", tt, err, o)
		}
		deb := filepath.Join(out, tt.file)
		got, err := exec.Command("dpkg-deb", "-f", deb, "Depends").Output()
		if err != nil || strings.TrimSpace(string(got)) != tt.depends {
			t.Errorf("%s: Depends %q (%v), want %q", tt.file, got, err, tt.depends)
		}
	}
	// A berth that cannot run here (another arch) without --completions-from is refused.
	out := t.TempDir()
	bad := filepath.Join(out, "berth-arm64")
	os.WriteFile(bad, []byte("\x7fELF not runnable"), 0o755)
	if o, err := build(t, "--version", "1", "--arch", "arm64", "--bin", bad, "--out", out); err == nil || !strings.Contains(o, "--completions-from") {
		t.Errorf("foreign binary: %v %s", err, o)
	}
	if o, err := build(t, "--version", "1", "--arch", "arm64", "--bin", bad, "--completions-from", bin, "--out", out, "--compression", "none"); err != nil {
		t.Errorf("with --completions-from: %v %s", err, o)
	}
}
