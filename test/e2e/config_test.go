//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// TestConfig drives one instance through the settings a user reaches for: a new instance
// started with a read-only share (-V DIR:ro) and its docker context made current; `berth
// config set` on the running instance (restart needed; invalid values refused without
// touching the file); `berth restart` applying 3 CPUs and 2.5 GiB, as the guest sees them;
// `berth shell` starting in a shared current directory; stop keeping the context and
// delete unsetting it.
func TestConfig(t *testing.T) {
	e := newEnv(t)
	share := filepath.Join(e.root, "ro share")
	if err := os.MkdirAll(share, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(share, "hello.txt"), []byte("from the host\n"), 0o644)
	cfgPath := filepath.Join(e.home, "default", "berth.yaml")

	out := e.mustBerth("start", "-V", share+":ro", "-c", "2", "-m", "2")
	if !strings.Contains(out, `Docker context "berth" is now current`) {
		t.Errorf("start did not say it made the context current:\n%s", out)
	}

	t.Run("context is current", func(t *testing.T) {
		// Plain docker, no --context: the current context is berth's.
		if got := strings.TrimSpace(e.plainDocker(t, "context", "show")); got != "berth" {
			t.Errorf("docker context show = %q, want berth", got)
		}
		e.plainDocker(t, "version", "--format", "{{.Server.Version}}")
	})

	t.Run("read-only share at the same path", func(t *testing.T) {
		var mounts []api.Mount
		json.Unmarshal([]byte(e.mustBerth("mounts", "--json")), &mounts)
		if len(mounts) != 1 || mounts[0].Path != share || !mounts[0].ReadOnly || mounts[0].State != "mounted" {
			t.Fatalf("mounts: %+v", mounts)
		}
		e.busyboxImage(image)
		vol := share + ":" + share
		if got := e.mustDocker("run", "--rm", "-v", vol, image, "cat", filepath.Join(share, "hello.txt")); got != "from the host\n" {
			t.Errorf("container read %q", got)
		}
		got, err := e.docker_(nil, "run", "--rm", "-v", vol, image, "touch", filepath.Join(share, "new"))
		if err == nil || !strings.Contains(got, "Read-only file system") {
			t.Errorf("a write into the :ro share: %v %q", err, got)
		}
		if _, err := os.Stat(filepath.Join(share, "new")); err == nil {
			t.Error("the container wrote into the read-only share")
		}
	})

	t.Run("shell starts in a shared current directory", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Getenv("BERTH_BIN"), "shell", "--", "pwd")
		cmd.Env, cmd.Dir = e.environ(), share
		b, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(b)) != share {
			t.Errorf("pwd in the shell: %q, %v; want %q", b, err, share)
		}
		if got := strings.TrimSpace(e.mustBerth("shell", "--workdir", "/tmp", "--", "pwd")); got != "/tmp" {
			t.Errorf("--workdir /tmp: pwd %q", got)
		}
	})

	t.Run("config set refuses bad values", func(t *testing.T) {
		before, _ := os.ReadFile(cfgPath)
		for _, tt := range []struct{ set, want1, want2 string }{
			{"cpus=0", "cpus: 0 is out of range", "want a whole number from 1 to 256"},
			{"memory=abc", `memory: "abc" is not allowed`, "want a number of GiB from 1 to 1024"},
		} {
			out, err := e.berth("config", "set", tt.set)
			if err == nil || !strings.Contains(out, tt.want1) || !strings.Contains(out, tt.want2) {
				t.Errorf("config set %s: %v\n%s", tt.set, err, out)
			}
		}
		if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
			t.Errorf("a refused set changed berth.yaml:\n%s\nwas\n%s", after, before)
		}
	})

	t.Run("config set then restart", func(t *testing.T) {
		out := e.mustBerth("config", "set", "cpus=3", "memory=2.5")
		if !strings.Contains(out, "restart needed") {
			t.Errorf("config set on a running instance: %q", out)
		}
		if got := strings.TrimSpace(e.mustBerth("config", "get", "memory")); got != "2.5" {
			t.Errorf("config get memory = %q", got)
		}
		e.mustBerth("restart")
		st := e.status("default")
		if st.State != api.StateRunning || st.CPUs != 3 || st.MemoryGiB != 2.5 || st.MemoryMiB != 2560 {
			t.Errorf("status after restart: %s, %d CPUs, %v GiB (%d MiB)", st.State, st.CPUs, st.MemoryGiB, st.MemoryMiB)
		}
		if got := strings.TrimSpace(e.mustBerth("shell", "--", "nproc")); got != "3" {
			t.Errorf("nproc in the guest = %q, want 3", got)
		}
		// free -m: "Mem:  TOTAL used free ...". The kernel keeps some of the 2560 MiB for
		// itself; 2 GiB would show well under 2048.
		free := e.mustBerth("shell", "--", "free", "-m")
		total := 0
		for _, l := range strings.Split(free, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Mem:" {
				total, _ = strconv.Atoi(f[1])
			}
		}
		if total <= 2200 || total > 2560 {
			t.Errorf("guest memory %d MiB, want 2.5 GiB less the kernel's share (2200-2560):\n%s", total, free)
		}
		t.Logf("guest: nproc 3, free -m total %d MiB", total)
	})

	t.Run("stop keeps the context, delete unsets it", func(t *testing.T) {
		e.mustBerth("stop")
		if got := strings.TrimSpace(e.plainDocker(t, "context", "show")); got != "berth" {
			t.Errorf("after stop: current context %q, want berth", got)
		}
		// No terminal and no --force: refused, nothing deleted.
		if out, err := e.berth("delete", "--data"); err == nil || !strings.Contains(out, "--force") {
			t.Errorf("delete --data without a terminal: %v %q", err, out)
		}
		if _, err := os.Stat(cfgPath); err != nil {
			t.Fatalf("refused delete removed the config: %v", err)
		}
		e.mustBerth("delete", "--data", "--force")
		if got := strings.TrimSpace(e.plainDocker(t, "context", "show")); got != "default" {
			t.Errorf("after delete: current context %q, want default", got)
		}
		if _, err := os.Stat(filepath.Join(e.home, "default")); !os.IsNotExist(err) {
			t.Errorf("instance dir left after delete --data: %v", err)
		}
		if _, err := os.Stat(filepath.Join(share, "hello.txt")); err != nil {
			t.Errorf("the shared directory was touched: %v", err)
		}
	})
}

// plainDocker runs the docker CLI without --context: what a user's `docker ps` does.
func (e *env) plainDocker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	env := []string{}
	for _, v := range e.environ() {
		if !strings.HasPrefix(v, "DOCKER_HOST=") && !strings.HasPrefix(v, "DOCKER_CONTEXT=") {
			env = append(env, v)
		}
	}
	cmd.Env = env
	b, err := cmd.CombinedOutput()
	t.Logf("$ docker %s\n%s", strings.Join(args, " "), b)
	if err != nil {
		t.Errorf("docker %s: %v", strings.Join(args, " "), err)
	}
	return string(b)
}
