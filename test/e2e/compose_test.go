//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// toolchain is the docker toolchain `make build` put beside berth (tools/build.sh):
// cli-plugins/docker-compose, cli-plugins/docker-buildx and the docker CLI.
type toolchain struct {
	dir      string            // beside BERTH_BIN
	versions map[string]string // tools/versions.env
}

func newToolchain(t testing.TB) *toolchain {
	t.Helper()
	tc := &toolchain{dir: filepath.Dir(berthBin(t)), versions: map[string]string{}}
	for _, p := range []string{"cli-plugins/docker-compose", "cli-plugins/docker-buildx", "docker"} {
		if _, err := os.Stat(filepath.Join(tc.dir, p)); err != nil {
			t.Fatalf("the docker toolchain is not beside %s (%v): `make build` builds it (tools/build.sh)", berthBin(t), err)
		}
	}
	f, err := os.Open("../../tools/versions.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			tc.versions[k] = v
		}
	}
	return tc
}

// installPlugins copies berth's plugins into the env's docker config (what `berth install`
// does for a user; TestToolchainInstall checks that path).
func (tc *toolchain) installPlugins(t testing.TB, e *env) {
	t.Helper()
	dir := filepath.Join(e.docker, "cli-plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"docker-compose", "docker-buildx"} {
		b, err := os.ReadFile(filepath.Join(tc.dir, "cli-plugins", p))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs a docker CLI (bin: "docker" from PATH, or berth's) against the berth context in
// dir, and returns its combined output.
func (e *env) runDocker(bin, dir string, extraEnv []string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--context", "berth"}, args...)...)
	cmd.Env = append(e.environ(), extraEnv...)
	cmd.Dir = dir
	cmd.WaitDelay = 10 * time.Second
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	e.t.Logf("$ %s %s (%.1fs)\n%s", filepath.Base(bin), strings.Join(args, " "), time.Since(t0).Seconds(), out)
	return string(out), err
}

func (e *env) mustRunDocker(bin, dir string, extraEnv []string, args ...string) string {
	e.t.Helper()
	out, err := e.runDocker(bin, dir, extraEnv, args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// copyTree copies the testdata directory src to dst (files and directories only).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// votingProject copies testdata/voting to a scratch directory and puts the testsrv binary
// into result's build context; it returns the project directory.
func votingProject(t testing.TB, e *env) string {
	t.Helper()
	dir := filepath.Join(e.root, "voting")
	copyTree(t, "testdata/voting", dir)
	srv, err := buildTestsrv(e.root, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result", "testsrv"), srv, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDockerToolchain boots one VM and runs the toolchain checks against it: BuildKit builds
// (build_test.go) and the voting-app compose project across a `berth restart`.
func TestDockerToolchain(t *testing.T) {
	tc := newToolchain(t)
	e := newEnv(t)
	tc.installPlugins(t, e)
	t0 := time.Now()
	e.mustBerth("start")
	e.busyboxImage(image)
	t.Logf("VM up and busybox imported in %.1fs", time.Since(t0).Seconds())

	// The plugins report their releases through both CLIs.
	for _, bin := range []string{"docker", filepath.Join(tc.dir, "docker")} {
		if out, err := e.runDocker(bin, e.root, nil, "compose", "version"); err != nil || !strings.Contains(out, tc.versions["COMPOSE_VERSION"]) {
			t.Errorf("%s compose version: %q (%v), want %s", bin, out, err, tc.versions["COMPOSE_VERSION"])
		}
		if out, err := e.runDocker(bin, e.root, nil, "buildx", "version"); err != nil || !strings.Contains(out, tc.versions["BUILDX_VERSION"]) {
			t.Errorf("%s buildx version: %q (%v), want %s", bin, out, err, tc.versions["BUILDX_VERSION"])
		}
	}
	cli := strings.TrimSuffix(strings.TrimPrefix(tc.versions["DOCKER_CLI_VERSION"], "v"), "+incompatible")
	if out, err := e.runDocker(filepath.Join(tc.dir, "docker"), e.root, nil, "version", "--format", "{{.Client.Version}} {{.Server.APIVersion}}"); err != nil || !strings.HasPrefix(out, cli+" ") {
		t.Errorf("berth's docker version: %q (%v), want client %s and the engine's API version", out, err, cli)
	}

	phase := func(name string, f func(t *testing.T)) {
		t0 := time.Now()
		t.Run(name, f)
		t.Logf("%s took %.1fs", name, time.Since(t0).Seconds())
	}
	phase("build", func(t *testing.T) { testBuild(t, e, tc) })
	phase("compose", func(t *testing.T) { testCompose(t, e, tc) })
	t.Logf("TestDockerToolchain: %.1fs in all", time.Since(t0).Seconds())
}

type composePS struct {
	Service, State, Health string
}

func composeServices(t *testing.T, e *env, dir string, env []string) map[string]composePS {
	t.Helper()
	out := e.mustRunDocker("docker", dir, env, "compose", "ps", "--all", "--format", "json")
	got := map[string]composePS{}
	// One JSON object per line (compose v2.21+).
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var p composePS
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			t.Fatalf("compose ps: %v: %q", err, line)
		}
		got[p.Service] = p
	}
	return got
}

func testCompose(t *testing.T, e *env, tc *toolchain) {
	dir := votingProject(t, e)
	port := freePort(t)
	env := []string{fmt.Sprintf("VOTE_PORT=%d", port)}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	services := []string{"vote", "result", "redis", "db", "worker"}
	allRunning := func(when string) {
		t.Helper()
		ps := composeServices(t, e, dir, env)
		for _, s := range services {
			if ps[s].State != "running" {
				t.Errorf("%s: service %s is %q, want running (%+v)", when, s, ps[s].State, ps)
			}
		}
	}

	out := e.mustRunDocker("docker", dir, env, "compose", "up", "-d", "--build", "--wait", "--wait-timeout", "600")
	if strings.Contains(out, "legacy builder") {
		t.Errorf("compose build used the legacy builder:\n%s", out)
	}
	allRunning("after up --build")
	if _, body := waitHTTP(t, url, 30*time.Second); body != "hello from 80\n" {
		t.Errorf("published port %d answered %q", port, body)
	}
	// The built images carry the build arg and the file from their context.
	if out := e.mustRunDocker("docker", dir, env, "compose", "exec", "-T", "vote", "cat", "/app/greeting", "/app/index.txt"); out != "vote\nvote app\n" {
		t.Errorf("vote image content %q", out)
	}
	// The worker reaches redis and db by name over back-tier; vote is on both networks.
	deadline := time.Now().Add(60 * time.Second)
	for {
		logs := e.mustRunDocker("docker", dir, env, "compose", "logs", "--no-color", "worker")
		if strings.Contains(logs, "worker-ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker never reached redis and db:\n%s", logs)
		}
		time.Sleep(2 * time.Second)
	}
	nets := e.mustRunDocker("docker", dir, env, "network", "ls", "--format", "{{.Name}}")
	for _, n := range []string{"voting_front-tier", "voting_back-tier"} {
		if !strings.Contains(nets, n) {
			t.Errorf("network %s missing: %s", n, nets)
		}
	}

	e.mustRunDocker("docker", dir, env, "compose", "kill")
	for s, p := range composeServices(t, e, dir, env) {
		if p.State == "running" {
			t.Errorf("after kill: %s still running", s)
		}
	}
	e.mustRunDocker("docker", dir, env, "compose", "up", "-d", "--wait", "--wait-timeout", "600")
	allRunning("after the second up")
	waitHTTP(t, url, 30*time.Second)

	// The named volume survives a restart of the VM.
	starts := func() int {
		out := e.mustRunDocker("docker", dir, env, "run", "--rm", "-v", "voting_db-data:/data", image, "cat", "/data/starts")
		return len(strings.Split(strings.TrimSpace(out), "\n"))
	}
	before := starts()
	if before < 2 {
		t.Errorf("db volume lists %d starts after up, kill, up: want 2", before)
	}
	t0 := time.Now()
	e.mustBerth("restart")
	t.Logf("berth restart took %.1fs", time.Since(t0).Seconds())
	if got := starts(); got < before {
		t.Fatalf("db volume lost its content across berth restart: %d starts recorded, had %d", got, before)
	}
	e.mustRunDocker("docker", dir, env, "compose", "up", "-d", "--wait", "--wait-timeout", "600")
	allRunning("after berth restart")
	if got := starts(); got != before+1 {
		t.Errorf("db volume after restart and up: %d starts, want %d (the old volume, one more start)", got, before+1)
	}
	waitHTTP(t, url, 30*time.Second)

	e.mustRunDocker("docker", dir, env, "compose", "down", "-v")
	if out := e.mustRunDocker("docker", dir, env, "volume", "ls", "-q"); strings.Contains(out, "voting_db-data") {
		t.Errorf("down -v left the volume: %s", out)
	}
	if out := e.mustRunDocker("docker", dir, env, "compose", "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("down left containers: %s", out)
	}
}

// TestToolchainInstall: `berth install` from a fresh HOME puts berth's plugins where the
// docker CLI finds them, keeps a user's own plugin (and says so), and `berth uninstall`
// leaves HOME as it was. No VM.
func TestToolchainInstall(t *testing.T) {
	tc := newToolchain(t)
	e := newEnv(t)
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("users-own-buildx=%v", own), func(t *testing.T) {
			home := filepath.Join(e.root, fmt.Sprintf("home-%v", own))
			plugins := filepath.Join(home, ".docker", "cli-plugins")
			os.MkdirAll(home, 0o755)
			userPlugin := []byte("#!/bin/sh\ncase \"$1\" in\ndocker-cli-plugin-metadata) echo '{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"a user\",\"Version\":\"v0.0.1-mine\"}' ;;\n*) echo \"my own buildx: $*\" ;;\nesac\n")
			if own {
				os.MkdirAll(plugins, 0o700)
				os.WriteFile(filepath.Join(plugins, "docker-buildx"), userPlugin, 0o755)
			}
			before := listTree(t, home)
			out := mustRunIn(t, home, berthBin(t), "install")
			if own && !strings.Contains(out, "docker-buildx (v0.0.1-mine, not berth's") {
				t.Errorf("install did not say it kept the user's docker-buildx")
			}
			if !own && !strings.Contains(out, "docker-buildx") {
				t.Errorf("install did not mention docker-buildx")
			}
			if v := mustRunIn(t, home, "docker", "compose", "version"); !strings.Contains(v, tc.versions["COMPOSE_VERSION"]) {
				t.Errorf("docker compose version after install: %q", v)
			}
			v := mustRunIn(t, home, "docker", "buildx", "version")
			switch {
			case own && !strings.Contains(v, "my own buildx"):
				t.Errorf("the user's buildx was not the one run: %q", v)
			case !own && !strings.Contains(v, tc.versions["BUILDX_VERSION"]):
				t.Errorf("docker buildx version after install: %q", v)
			}
			mustRunIn(t, home, berthBin(t), "uninstall")
			if d := diffLists(before, listTree(t, home)); d != "" {
				t.Errorf("HOME after uninstall differs from before install:\n%s", d)
			}
			if own {
				if b, _ := os.ReadFile(filepath.Join(plugins, "docker-buildx")); string(b) != string(userPlugin) {
					t.Errorf("the user's docker-buildx changed")
				}
			}
		})
	}
}
