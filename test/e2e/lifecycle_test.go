//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/creack/pty"
)

const image = "berth-e2e/busybox:latest"

// TestLifecycle is the product's spine: start, use through the real docker CLI, stop,
// start again with everything kept, delete.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	out := e.mustBerth("start", "--cpus", "2", "--memory", "2")
	for _, phase := range []string{api.PhasePrepare, api.PhaseKernel, api.PhaseAgent, api.PhaseEngine, api.PhaseSocket} {
		if !strings.Contains(out, phase) {
			t.Errorf("start output does not show phase %q", phase)
		}
	}
	st := e.status("default")
	if st.State != api.StateRunning {
		t.Fatalf("state = %s, want Running (%s)", st.State, st.Error)
	}
	t.Logf("phases: %+v (accel %s)", st.Phases, st.Accel)

	t.Run("version", func(t *testing.T) {
		out := e.mustDocker("version", "--format", "{{.Server.Version}}")
		if strings.TrimSpace(out) == "" || strings.TrimSpace(out) != st.Guest.EngineVersion {
			t.Errorf("server version %q, guest reports %q", out, st.Guest.EngineVersion)
		}
	})
	t.Run("start while running", func(t *testing.T) {
		out, err := e.berth("start") // done already: exit 0 (issue 15)
		if err != nil || !strings.Contains(out, "already running") {
			t.Errorf("second start: err=%v out=%q", err, out)
		}
	})

	e.busyboxImage(image)

	t.Run("run echo", func(t *testing.T) {
		if out := e.mustDocker("run", "--rm", image, "echo", "hi"); strings.TrimSpace(out) != "hi" {
			t.Errorf("got %q, want hi", out)
		}
	})
	t.Run("stdin pipe and half-close", func(t *testing.T) {
		out, err := e.docker_(strings.NewReader("x\n"), "run", "-i", "--rm", image, "cat")
		if err != nil || strings.TrimSpace(out) != "x" {
			t.Errorf("got %q, %v; want x", out, err)
		}
	})
	t.Run("bulk stdin", func(t *testing.T) {
		// 8 MiB through stdin and back: the byte pipe must neither drop nor stall.
		data := bytes.Repeat([]byte("0123456789abcdef"), 512<<10)
		out, err := e.docker_(bytes.NewReader(data), "run", "-i", "--rm", image, "wc", "-c")
		if err != nil || strings.TrimSpace(out) != "8388608" {
			t.Errorf("wc -c = %q, %v", out, err)
		}
	})
	t.Run("run -it has a tty", func(t *testing.T) {
		out := e.ttyDocker(t, "run", "-it", "--rm", image, "sh", "-c", "tty; stty size")
		if !strings.Contains(out, "/dev/pts/") {
			t.Errorf("no tty in %q", out)
		}
	})
	t.Run("exec -it has a tty", func(t *testing.T) {
		e.mustDocker("run", "-d", "--name", "sleeper", image, "sleep", "600")
		defer e.docker_(nil, "rm", "-f", "sleeper")
		out := e.ttyDocker(t, "exec", "-it", "sleeper", "tty")
		if !strings.Contains(out, "/dev/pts/") {
			t.Errorf("no tty in %q", out)
		}
	})
	t.Run("logs -f streams and ends", func(t *testing.T) {
		id := strings.TrimSpace(e.mustDocker("run", "-d", image, "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done"))
		out := e.mustDocker("logs", "-f", id)
		if out != "line1\nline2\nline3\n" {
			t.Errorf("logs -f = %q", out)
		}
	})

	// State that must survive a stop/start.
	e.mustDocker("volume", "create", "keep")
	e.mustDocker("run", "--rm", "-v", "keep:/data", image, "sh", "-c", "echo kept > /data/f")
	e.mustDocker("create", "--name", "survivor", image, "true")

	t.Run("shell runs a command in the VM", func(t *testing.T) {
		out := e.mustBerth("shell", "--", "cat", "/proc/1/comm")
		if !strings.Contains(out, "init") {
			t.Errorf("PID 1 in the guest is %q", out)
		}
	})

	e.mustBerth("stop")
	t.Run("stop leaves nothing behind", func(t *testing.T) { e.assertNothingRunning(t, "default") })
	t.Run("stop while stopped", func(t *testing.T) {
		out, err := e.berth("stop") // done already: exit 0 (issue 15)
		if err != nil || !strings.Contains(out, "not running") {
			t.Errorf("err=%v out=%q", err, out)
		}
	})

	e.mustBerth("start")
	t.Run("data survives a restart", func(t *testing.T) {
		e.mustDocker("image", "inspect", image)
		if out := e.mustDocker("ps", "-a", "--filter", "name=survivor", "--format", "{{.Names}}"); strings.TrimSpace(out) != "survivor" {
			t.Errorf("container lost: %q", out)
		}
		if out := e.mustDocker("run", "--rm", "-v", "keep:/data", image, "cat", "/data/f"); strings.TrimSpace(out) != "kept" {
			t.Errorf("volume content %q", out)
		}
	})

	t.Run("kill -9 of the daemon loses nothing and leaves no VM", func(t *testing.T) {
		st := e.status("default")
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// QEMU dies with its daemon (PDEATHSIG); the lock is the kernel's, so it is free.
		deadline := time.Now().Add(30 * time.Second)
		for e.status("default").State != api.StateStopped && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		for {
			leftover := false
			procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
			for _, p := range procs {
				b, _ := os.ReadFile(p)
				if bytes.Contains(b, []byte(filepath.Join(e.home, "default"))) {
					leftover = true
				}
			}
			if !leftover {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the VM outlived its killed daemon")
			}
			time.Sleep(200 * time.Millisecond)
		}
		e.mustBerth("start")
		e.mustDocker("image", "inspect", image)
		if out := e.mustDocker("run", "--rm", "-v", "keep:/data", image, "cat", "/data/f"); strings.TrimSpace(out) != "kept" {
			t.Errorf("volume content after a crash: %q", out)
		}
	})

	e.mustBerth("delete", "--data", "--force")
	t.Run("delete --data removes everything", func(t *testing.T) {
		e.assertNothingRunning(t, "default")
		if _, err := os.Stat(filepath.Join(e.home, "default")); !os.IsNotExist(err) {
			t.Errorf("instance dir still there: %v", err)
		}
		if out, err := e.docker_(nil, "context", "inspect", "berth"); err == nil {
			t.Errorf("docker context still there: %s", out)
		}
	})
}

// ttyDocker runs the docker CLI on a pseudo-terminal, as a user's shell would.
func (e *env) ttyDocker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.dockerCmd(ctx, args...)
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&buf, f); close(done) }()
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	t.Logf("$ docker %s (tty)\n%s", strings.Join(args, " "), buf.String())
	if err != nil {
		t.Errorf("docker %s: %v", strings.Join(args, " "), err)
	}
	return buf.String()
}

// assertNothingRunning checks that no daemon, VM, socket file or listener of the instance
// is left.
func (e *env) assertNothingRunning(t *testing.T, name string) {
	t.Helper()
	dir := filepath.Join(e.home, name)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, dir) {
			t.Errorf("process still running: %s: %s", p, cl)
		}
		envb, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
		if strings.Contains(cl, "hostd") && bytes.Contains(envb, []byte("BERTH_HOME="+e.home+"\x00")) {
			t.Errorf("host daemon still running: %s: %s", p, cl)
		}
	}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			t.Errorf("socket left behind: %s", p)
		}
		return nil
	})
	unix, _ := os.ReadFile("/proc/net/unix")
	if bytes.Contains(unix, []byte(dir)) {
		t.Errorf("a unix listener under %s is still open", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "hostd.pid")); err == nil {
		t.Errorf("hostd.pid left behind")
	}
}

// TestBadInput checks that mistakes get a clear message and a non-zero exit, without
// booting a VM.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		setup func()
		args  []string
		want  string
	}{
		{name: "unknown instance", args: []string{"stop", "nosuch"}, want: `instance "nosuch": instance not found`},
		{name: "unknown instance status", args: []string{"status", "nosuch"}, want: "instance not found"},
		{name: "bad instance name", args: []string{"start", "Bad_Name"}, want: "invalid instance name"},
		{name: "bad flag", args: []string{"start", "--cpus", "0", "flagcheck"}, want: "cpus: 0 is out of range"},
		{name: "invalid config", setup: func() {
			writeConfig(t, e, "broken", "cpus: 2\nmemroy: 4\n")
		}, args: []string{"start", "broken"}, want: "line 2: field memroy not found"},
		{name: "invalid config value", setup: func() {
			writeConfig(t, e, "badval", "cpus: two\n")
		}, args: []string{"start", "badval"}, want: "line 1"},
		{name: "missing image", setup: func() {
			e.extra = []string{"BERTH_IMAGES=" + filepath.Join(e.root, "no-images")}
		}, args: []string{"start", "noimage"}, want: "guest image for"},
		{name: "qemu not installed", setup: func() {
			e.extra = []string{"PATH=" + pathWithout(t, "qemu-system-x86_64", "qemu-system-aarch64")}
		}, args: []string{"start", "noqemu"}, want: "not found: install QEMU"},
		{name: "docker socket taken", setup: func() {
			writeConfig(t, e, "taken", "")
			os.WriteFile(filepath.Join(e.home, "taken", "docker.sock"), []byte("not a socket"), 0o600)
		}, args: []string{"start", "taken"}, want: "is not a socket"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.extra = nil
			if tc.setup != nil {
				tc.setup()
			}
			out, err := e.berth(tc.args...)
			if err == nil {
				t.Fatalf("berth %v succeeded; want an error containing %q", tc.args, tc.want)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Errorf("want a non-zero exit, got %v", err)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q does not contain %q", out, tc.want)
			}
		})
	}
	// Nothing may be left running by failed starts.
	for _, n := range []string{"broken", "noimage", "noqemu", "taken"} {
		if _, err := os.Stat(filepath.Join(e.home, n)); err == nil {
			e.assertNothingRunning(t, n)
		}
	}
	// The user's file is untouched.
	if b, _ := os.ReadFile(filepath.Join(e.home, "taken", "docker.sock")); string(b) != "not a socket" {
		t.Errorf("berth changed a file it does not own: %q", b)
	}
}

func writeConfig(t testing.TB, e *env, name, content string) {
	dir := filepath.Join(e.home, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "berth.yaml"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// pathWithout returns $PATH minus the directories holding the given programs.
func pathWithout(t *testing.T, progs ...string) string {
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		drop := false
		for _, p := range progs {
			if _, err := os.Stat(filepath.Join(d, p)); err == nil {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, d)
		}
	}
	return strings.Join(keep, string(os.PathListSeparator))
}
