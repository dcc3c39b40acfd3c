//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// guest runs a shell command in the VM through `berth shell`.
func (e *env) guest(cmd string) (string, error) {
	e.t.Helper()
	out, err := e.berth("shell", "--", "sh", "-c", cmd)
	return strings.TrimSpace(out), err
}

// waitFor polls cond until it holds or within passes, and returns how long it took.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(t0)
	t.Logf("%s after %s", what, took.Round(10*time.Millisecond))
	return took
}

// hostdStats is the daemon's own footprint from `berth status --json`.
func (e *env) hostdStats(t *testing.T) api.Process {
	t.Helper()
	st := e.status("default")
	if st.Hostd == nil {
		t.Fatalf("status has no hostd footprint")
	}
	return *st.Hostd
}

// agentFDs counts the agent serve process's open descriptors in the VM (each forwarded
// stream holds one to the engine socket or a port). `berth shell` runs as its child.
func (e *env) agentFDs(t *testing.T) int {
	t.Helper()
	out, err := e.guest("ls /proc/$PPID/fd | busybox wc -l")
	if err != nil {
		t.Fatalf("counting the agent's descriptors: %v: %s", err, out)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// engineConns counts dockerd's connections on its socket in the VM.
func (e *env) engineConns(t *testing.T) int {
	t.Helper()
	out, err := e.guest("ss -xH state connected | busybox grep -c /run/docker.sock || true")
	if err != nil {
		t.Fatalf("counting engine connections: %v: %s", err, out)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// TestReliability drives the faults of docs/reliability.md that one running instance can
// take, each followed by the check that berth recovered on its own.
func TestReliability(t *testing.T) {
	e := newEnv(t)
	// The local registry (registry.local) for the kill during a pull below.
	writeConfig(t, e, "default", "registry:\n  enabled: true\n  hostPort: 0\n")
	// A low descriptor limit (inherited by hostd) for the accept-flood check below.
	cmd := exec.Command("prlimit", "--nofile=512:512", os.Getenv("BERTH_BIN"), "start")
	cmd.Env = e.environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("berth start: %v\n%s", err, out)
	}
	e.busyboxImage(image)
	e.mustDocker("run", "-d", "--name", "web", "--restart", "always", "-p", "18090:80", image, "testsrv", "http", "80")
	waitHTTP(t, "http://127.0.0.1:18090/", 30*time.Second)

	recovered := func(t *testing.T, what string) {
		t.Helper()
		waitFor(t, what+": docker ps works", 2*time.Minute, func() bool {
			_, err := e.docker_(nil, "ps", "-q")
			return err == nil
		})
		waitFor(t, what+": docker run works", 2*time.Minute, func() bool {
			_, err := e.docker_(nil, "run", "--rm", image, "true")
			return err == nil
		})
		waitFor(t, what+": the forwarded port answers", 2*time.Minute, func() bool {
			c := &http.Client{Timeout: 2 * time.Second}
			resp, err := c.Get("http://127.0.0.1:18090/")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		waitFor(t, what+": state Running", time.Minute, func() bool { return e.status("default").State == api.StateRunning })
		out, err := e.guest("pgrep -c -x dockerd; pgrep -c -x containerd")
		if err != nil || strings.Fields(out)[0] != "1" || strings.Fields(out)[1] != "1" {
			t.Errorf("want exactly one dockerd and one containerd, pgrep says %q (%v)", out, err)
		}
	}

	t.Run("SIGKILL agent serve process", func(t *testing.T) {
		// `berth shell` runs its command as a child of the serve process.
		before, err := e.guest("echo $PPID")
		if err != nil {
			t.Fatal(err)
		}
		e.guest("kill -9 $PPID") // the shell dies with it: its result does not matter
		recovered(t, "serve process killed")
		after, err := e.guest("echo $PPID")
		if err != nil || after == before {
			t.Errorf("serve process pid %q before, %q after (%v): it was not restarted", before, after, err)
		}
	})
	for _, name := range []string{"dockerd", "containerd"} {
		t.Run("SIGKILL "+name, func(t *testing.T) {
			if out, err := e.guest("pkill -9 -x " + name); err != nil {
				t.Fatalf("pkill %s: %v: %s", name, err, out)
			}
			recovered(t, name+" killed")
		})
	}

	t.Run("clients killed mid-stream", func(t *testing.T) {
		for i := range 4 {
			e.mustDocker("run", "-d", "--name", fmt.Sprintf("chatty%d", i), image, "sh", "-c", "while true; do echo chatty line $(date); usleep 20000; done")
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		startClients := func(logs, execs int) []*exec.Cmd {
			var clients []*exec.Cmd
			for i := range logs {
				clients = append(clients, e.dockerCmd(ctx, "logs", "-f", fmt.Sprintf("chatty%d", i%4)))
			}
			for i := range execs {
				c := e.dockerCmd(ctx, "exec", "-i", fmt.Sprintf("chatty%d", i%4), "sh", "-c", "while true; do echo exec line; usleep 20000; done")
				c.Stdin, _ = os.Open(os.DevNull)
				clients = append(clients, c)
			}
			for _, c := range clients {
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
			}
			return clients
		}
		kill := func(clients []*exec.Cmd) {
			for _, c := range clients {
				c.Process.Signal(syscall.SIGKILL)
				c.Wait()
			}
		}
		// A small round first, so that what hostd creates once (the runtime's GC workers,
		// pools) is in the baseline and only what leaks per client counts.
		kill(startClients(4, 2))
		time.Sleep(5 * time.Second)
		base, baseFDs := e.hostdStats(t), e.agentFDs(t)
		t.Logf("baseline: hostd %+v, agent fds %d, engine connections %d", base, baseFDs, e.engineConns(t))
		clients := startClients(60, 20)
		time.Sleep(10 * time.Second)
		peak, peakFDs := e.hostdStats(t), e.agentFDs(t)
		t.Logf("with %d clients: hostd %+v, agent fds %d, engine connections %d", len(clients), peak, peakFDs, e.engineConns(t))
		if peakFDs < baseFDs+len(clients)/2 {
			t.Errorf("only %d agent fds with %d clients (baseline %d): the count is wrong", peakFDs, len(clients), baseFDs)
		}
		kill(clients)
		within := func(v, base int) bool { return v <= base+base/10+2 }
		var last api.Process
		waitFor(t, "hostd goroutines and fds back to baseline", 30*time.Second, func() bool {
			last = e.hostdStats(t)
			return within(last.Goroutines, base.Goroutines) && within(last.FDs, base.FDs)
		})
		waitFor(t, "the agent's engine connections closed", 30*time.Second, func() bool {
			return e.agentFDs(t) <= baseFDs+1
		})
		after := e.hostdStats(t)
		t.Logf("after: hostd %+v (RSS %.1f MiB, baseline %.1f, peak %.1f); dockerd keeps %d connections (exec sessions whose processes still run)", after,
			float64(after.RSSBytes)/(1<<20), float64(base.RSSBytes)/(1<<20), float64(peak.RSSBytes)/(1<<20), e.engineConns(t))
		for i := range 4 {
			e.docker_(nil, "rm", "-f", fmt.Sprintf("chatty%d", i))
		}
	})

	t.Run("accept flood past the fd limit", func(t *testing.T) {
		sock := filepath.Join(e.home, "default", "docker.sock")
		var conns []net.Conn
		for range 600 {
			c, err := net.Dial("unix", sock)
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		t.Logf("held %d connections against a limit of 512", len(conns))
		time.Sleep(2 * time.Second)
		for _, c := range conns {
			c.Close()
		}
		waitFor(t, "docker.sock serves again", 30*time.Second, func() bool {
			_, err := e.docker_(nil, "version", "--format", "{{.Server.Version}}")
			return err == nil
		})
	})

	t.Run("another user", func(t *testing.T) {
		user := otherUser(t)
		dir := filepath.Join(e.home, "default")
		for _, s := range []string{"hostd.sock", "docker.sock"} {
			out, err := exec.Command("runuser", "-u", user, "--", "curl", "-sv", "--max-time", "5",
				"--unix-socket", filepath.Join(dir, s), "http://x/v1/status").CombinedOutput()
			if err == nil || !strings.Contains(string(out), "Permission denied") {
				t.Errorf("user %s reached %s: err=%v out=%s", user, s, err, out)
			}
		}
	})

	t.Run("SIGKILL the VM while running", func(t *testing.T) {
		// Killed in the middle of a build (BuildKit, through berth's buildx plugin, as
		// `docker build` runs for users) and of a pull (from the instance's own registry,
		// registry.local: nothing else is reachable here): both clients end with an error
		// instead of hanging, and after the next start the engine builds and pulls again.
		newToolchain(t).installPlugins(t, e)
		const big = "registry.local:5000/big:1" // 48 MiB that do not compress
		if out, err := e.docker_(strings.NewReader("FROM "+image+"\nRUN dd if=/dev/urandom of=/blob bs=1M count=48\n"), "build", "-t", big, "-"); err != nil {
			t.Fatalf("building %s: %v\n%s", big, err, out)
		}
		e.mustDocker("push", big)
		// Gone from the engine, its layers included (the build cache holds them too), so
		// the pull below has to fetch them.
		e.mustDocker("rmi", big)
		e.mustDocker("builder", "prune", "-af")

		clients := map[string]*exec.Cmd{}
		outs := map[string]*lockedBuffer{}
		ended := map[string]chan error{}
		run := func(name string, stdin string, args ...string) {
			c := e.dockerCmd(t.Context(), args...)
			if stdin != "" {
				c.Stdin = strings.NewReader(stdin)
			}
			outs[name] = &lockedBuffer{}
			c.Stdout, c.Stderr = outs[name], outs[name]
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			clients[name], ended[name] = c, done
			go func() { done <- c.Wait() }()
		}
		run("build", "FROM "+image+"\nRUN sleep 600\n", "build", "-t", "killed-build", "-")
		waitFor(t, "the build's RUN step runs", 2*time.Minute, func() bool {
			out, err := e.guest("pgrep -x sleep")
			return err == nil && strings.TrimSpace(out) != ""
		})
		run("pull", "", "pull", big)
		var pullEnded error
		waitFor(t, "the pull fetches layers", time.Minute, func() bool {
			select {
			case err := <-ended["pull"]:
				pullEnded = fmt.Errorf("exit: %v", err)
				return true
			default:
			}
			return strings.Contains(outs["pull"].String(), "Pulling fs layer")
		})
		if pullEnded != nil {
			t.Fatalf("the pull ended before the kill (%v):\n%s", pullEnded, outs["pull"])
		}
		qemu := vmPID(t, e)
		killed := time.Now()
		syscall.Kill(qemu, syscall.SIGKILL)
		for _, name := range []string{"build", "pull"} {
			select {
			case err := <-ended[name]:
				if err == nil {
					t.Errorf("the %s succeeded although its VM was killed:\n%s", name, outs[name])
				}
				t.Logf("the %s's client ended %s after the kill: %v", name, time.Since(killed).Round(10*time.Millisecond), err)
			case <-time.After(30 * time.Second):
				clients[name].Process.Kill()
				t.Errorf("the %s's client still waits 30 s after its VM was killed:\n%s", name, outs[name])
			}
		}
		waitFor(t, "state Error", 10*time.Second, func() bool {
			st := e.status("default")
			return st.State == api.StateError || st.State == api.StateStopped
		})
		waitFor(t, "sockets and ports released", 10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(e.home, "default", "docker.sock"))
			c, derr := net.DialTimeout("tcp", "127.0.0.1:18090", time.Second)
			if derr == nil {
				c.Close()
			}
			return os.IsNotExist(err) && derr != nil
		})
		e.mustBerth("start")
		waitHTTP(t, "http://127.0.0.1:18090/", time.Minute)
		out, err := e.docker_(strings.NewReader("FROM "+image+"\nRUN echo built after the kill\n"), "build", "--no-cache", "-t", "after-kill", "-")
		if err != nil {
			t.Errorf("docker build after the VM was killed mid-build: %v\n%s", err, out)
		}
		waitFor(t, "the pull works after the kill", 2*time.Minute, func() bool {
			_, err := e.docker_(nil, "pull", big)
			return err == nil
		})
		if out, err := e.docker_(nil, "run", "--rm", big, "sh", "-c", "wc -c </blob"); err != nil || strings.TrimSpace(out) != "50331648" {
			t.Errorf("the image pulled after the kill: %v %q", err, out)
		}
	})

	t.Run("SIGKILL the VM during stop", func(t *testing.T) {
		stop := exec.Command(os.Getenv("BERTH_BIN"), "stop")
		stop.Env = e.environ()
		out := &lockedBuffer{}
		stop.Stdout, stop.Stderr = out, out
		if err := stop.Start(); err != nil {
			t.Fatal(err)
		}
		stopped := make(chan error, 1)
		go func() { stopped <- stop.Wait() }()
		waitFor(t, "state Stopping", time.Minute, func() bool { return e.status("default").State == api.StateStopping })
		qemu := vmPIDOrZero(e)
		if qemu == 0 {
			t.Fatal("the VM was gone before the kill")
		}
		killed := time.Now()
		syscall.Kill(qemu, syscall.SIGKILL)
		select {
		case err := <-stopped:
			t.Logf("berth stop ended %s after the kill: %v\n%s", time.Since(killed).Round(10*time.Millisecond), err, out)
		case <-time.After(30 * time.Second):
			stop.Process.Kill()
			t.Fatalf("berth stop still waits 30 s after its VM was killed:\n%s", out)
		}
		e.assertNothingRunning(t, "default")
		e.mustBerth("start")
	})

	t.Run("SIGKILL the VM during start", func(t *testing.T) {
		e.mustBerth("stop")
		cmd := exec.Command(os.Getenv("BERTH_BIN"), "start")
		cmd.Env = e.environ()
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var qemu int
		waitFor(t, "the VM process exists", time.Minute, func() bool { qemu = vmPIDOrZero(e); return qemu > 0 })
		syscall.Kill(qemu, syscall.SIGKILL)
		err := cmd.Wait()
		if err == nil {
			t.Errorf("berth start succeeded although its VM was killed:\n%s", out)
		}
		t.Logf("start after the kill: %v\n%s", err, out)
		e.assertNothingRunning(t, "default")
		e.mustBerth("start")
	})
}

// vmPID finds the instance's VM process (a child of its hostd).
func vmPID(t *testing.T, e *env) int {
	t.Helper()
	pid := vmPIDOrZero(e)
	if pid == 0 {
		t.Fatal("no VM process found")
	}
	return pid
}

func vmPIDOrZero(e *env) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		cl := string(b)
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, filepath.Join(e.home, "default")) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	return 0
}

// otherUser returns a second local user, created for the test (needs root).
func otherUser(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a second user")
	}
	const name = "berth-e2e-other"
	if exec.Command("id", name).Run() != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v: %s", err, out)
		}
		t.Cleanup(func() { exec.Command("userdel", name).Run() })
	}
	return name
}
