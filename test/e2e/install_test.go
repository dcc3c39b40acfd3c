//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// homeEnv is the environment of a user whose HOME is home and who set nothing berth or
// docker specific: no BERTH_HOME, DOCKER_CONFIG, BERTH_IMAGES or XDG dirs, so every default
// path is under home. BERTH_E2E_ROOT stays, so test/run-e2e.sh can clean up after a failure.
func homeEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "BERTH_HOME", "DOCKER_CONFIG", "BERTH_IMAGES", "BERTH_IMAGE_URL", "BERTH_IMAGE_SHA256", "DOCKER_HOST", "DOCKER_CONTEXT",
			"XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home)
}

// runIn runs a command as that user and returns its combined output.
func runIn(t *testing.T, home string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = homeEnv(home)
	cmd.Dir = home
	out, err := cmd.CombinedOutput()
	t.Logf("$ %s %s\n%s", filepath.Base(name), strings.Join(args, " "), out)
	return string(out), err
}

func mustRunIn(t *testing.T, home string, name string, args ...string) string {
	t.Helper()
	out, err := runIn(t, home, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// listTree returns every path under root (relative) with its type and permissions, and
// for files their size: a snapshot to diff.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel+" "+st.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func diffLists(a, b []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, s := range l {
			m[s] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var d []string
	for _, s := range a {
		if !mb[s] {
			d = append(d, "- "+s)
		}
	}
	for _, s := range b {
		if !ma[s] {
			d = append(d, "+ "+s)
		}
	}
	return strings.Join(d, "\n")
}

// TestInstall takes a fresh HOME from nothing to a working docker context and back to
// nothing: berth install, berth start, docker --context berth ps, berth uninstall --data,
// and the HOME's file list must be exactly what it was.
func TestInstall(t *testing.T) {
	e := newEnv(t)
	images := os.Getenv("BERTH_IMAGES")
	if images == "" {
		t.Skip("BERTH_IMAGES not set: run through `make test-e2e`")
	}
	home := filepath.Join(e.root, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	// The harness's teardown stops what runs under e.home: point it at this HOME's root.
	e.home = filepath.Join(home, ".berth")

	// The user's own docker setup, which uninstall must leave alone: settings in
	// config.json and another context, made by the real docker CLI.
	os.MkdirAll(filepath.Join(home, ".docker"), 0o700)
	os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte("{\n\t\"detachKeys\": \"ctrl-e,e\"\n}"), 0o600)
	mustRunIn(t, home, "docker", "context", "create", "other", "--docker", "host=unix:///run/other.sock")
	before := listTree(t, home)
	t.Logf("HOME before install: %d entries", len(before))

	out := mustRunIn(t, home, berthBin(t), "install", "--image-dir", images, "--start-at-login")
	installed := filepath.Join(home, ".local", "bin", "berth")
	for _, p := range []string{
		installed,
		".berth/_images/" + runtime.GOARCH + "/root.img",
		".local/share/bash-completion/completions/berth",
		".local/share/zsh/site-functions/_berth",
		".config/fish/completions/berth.fish",
		".config/systemd/user/berth.service",
		".berth/install.json",
	} {
		if !filepath.IsAbs(p) {
			p = filepath.Join(home, p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("install did not create %s", p)
		}
	}
	if !strings.Contains(out, "created    docker context berth") {
		t.Errorf("install output does not mention the docker context")
	}

	// Idempotent, run by the installed binary itself.
	afterInstall := listTree(t, home)
	out = mustRunIn(t, home, installed, "install", "--image-dir", images, "--start-at-login")
	if !strings.Contains(out, "Nothing to change") {
		t.Errorf("second install did not say it changed nothing")
	}
	if d := diffLists(afterInstall, listTree(t, home)); d != "" {
		t.Errorf("second install changed HOME:\n%s", d)
	}

	// The completion scripts are real ones.
	if b, _ := os.ReadFile(filepath.Join(home, ".local/share/zsh/site-functions/_berth")); !strings.HasPrefix(string(b), "#compdef berth") {
		t.Errorf("zsh completion starts %.40q", b)
	}

	mustRunIn(t, home, installed, "start")
	mustRunIn(t, home, "docker", "--context", "berth", "ps")
	// The user makes berth the default context: uninstall must undo that.
	mustRunIn(t, home, "docker", "context", "use", "berth")
	if out := mustRunIn(t, home, "docker", "version", "--format", "{{.Server.Version}}"); strings.TrimSpace(out) == "" {
		t.Errorf("docker via the current context: no server version")
	}

	out = mustRunIn(t, home, installed, "uninstall", "--data")
	if !strings.Contains(out, "stopped    instance default") {
		t.Errorf("uninstall did not stop the running instance first")
	}
	if d := diffLists(before, listTree(t, home)); d != "" {
		t.Fatalf("HOME after uninstall --data differs from before install:\n%s", d)
	}
	var cfg map[string]any
	b, _ := os.ReadFile(filepath.Join(home, ".docker", "config.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["currentContext"] != nil || cfg["detachKeys"] != "ctrl-e,e" {
		t.Errorf("config.json after uninstall: %s (%v)", b, err)
	}
	out = mustRunIn(t, home, "docker", "context", "ls", "--format", "{{.Name}}")
	if ctxs := strings.Fields(out); strings.Join(ctxs, " ") != "default other" {
		t.Errorf("docker contexts after uninstall: %q, want default and other", ctxs)
	}

	// Idempotent uninstall; the original binary still runs it (the installed one is gone).
	if out := mustRunIn(t, home, berthBin(t), "uninstall"); !strings.Contains(out, "Nothing to remove") {
		t.Errorf("second uninstall: %q", out)
	}
}

// TestInstallDeb builds the .deb from the e2e binary and image, installs it with dpkg,
// boots an instance from the packaged image (/usr/share/berth/images) and removes the
// package again. It changes the system, so it needs root and never runs over a berth
// package installed by someone else.
func TestInstallDeb(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dpkg -i needs root")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("not a Debian system")
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "berth").Output(); strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") {
		t.Skipf("a berth package is already installed (%s): not touching it", out)
	}
	if _, err := os.Stat("/usr/bin/berth"); err == nil {
		t.Skip("/usr/bin/berth exists and is not from a package: not touching it")
	}
	e := newEnv(t)
	images := os.Getenv("BERTH_IMAGES")
	if images == "" {
		t.Skip("BERTH_IMAGES not set: run through `make test-e2e`")
	}
	arch := runtime.GOARCH

	out := filepath.Join(e.root, "deb")
	build := exec.Command("../../installer/deb/build.sh", "--version", "v0.0.0-e2e", "--arch", arch,
		"--bin", berthBin(t), "--image-dir", images, "--out", out, "--compression", "none")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	// v0.0.0-e2e as a Debian version (see build.sh): 0.0.0+e2e.
	deb := filepath.Join(out, "berth_0.0.0+e2e_"+arch+".deb")

	// Whatever happens below, the package goes again.
	t.Cleanup(func() {
		if b, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "berth").Output(); strings.Contains(string(b), "ok installed") {
			b, err := exec.Command("dpkg", "-r", "berth").CombinedOutput()
			t.Logf("cleanup: dpkg -r berth: %v\n%s", err, b)
		}
	})
	if b, err := exec.Command("dpkg", "-i", deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, b)
	}
	files, _ := exec.Command("dpkg", "-L", "berth").Output()
	for _, want := range []string{"/usr/bin/berth", "/usr/share/berth/images/" + arch + "/root.img",
		"/usr/share/bash-completion/completions/berth", "/usr/lib/systemd/user/berth.service"} {
		if !strings.Contains(string(files), want+"\n") {
			t.Errorf("dpkg -L berth lacks %s", want)
		}
	}
	home := filepath.Join(e.root, "debhome")
	os.MkdirAll(home, 0o755)
	e.home = filepath.Join(home, ".berth")
	if v := mustRunIn(t, home, "/usr/bin/berth", "version"); !strings.HasPrefix(v, "berth ") {
		t.Errorf("berth version: %q", v)
	}

	// No image in ~/.berth/_images and no BERTH_IMAGES: the packaged one boots.
	mustRunIn(t, home, "/usr/bin/berth", "start")
	mustRunIn(t, home, "docker", "--context", "berth", "ps")
	mustRunIn(t, home, "/usr/bin/berth", "stop")
	if _, err := os.Stat(filepath.Join(home, ".berth", "_images")); err == nil {
		t.Errorf("the image was copied into ~/.berth/_images instead of used from the package")
	}
	mustRunIn(t, home, "/usr/bin/berth", "delete", "--data", "--force")

	if b, err := exec.Command("dpkg", "-r", "berth").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -r: %v\n%s", err, b)
	}
	for _, p := range []string{"/usr/bin/berth", "/usr/share/berth", "/usr/lib/systemd/user/berth.service",
		"/usr/share/bash-completion/completions/berth", "/usr/share/doc/berth"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left after dpkg -r", p)
		}
	}
	if b, _ := exec.Command("dpkg-query", "-W", "-f", "${Status}", "berth").Output(); strings.Contains(string(b), "ok installed") {
		t.Errorf("still installed after dpkg -r: %s", b)
	}
}
