//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// idlePauseAfter is the instance's idle.pauseAfter in these tests.
const idlePauseAfter = 20 * time.Second

// startIdleInstance creates instance name with idle.pauseAfter set (0 turns it off) and
// starts it; it returns the QEMU process's pid.
func startIdleInstance(t testing.TB, e *env, name string, pauseAfter time.Duration) int {
	t.Helper()
	dir := filepath.Join(e.home, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("idle:\n  pauseAfter: %s\n", pauseAfter)
	if err := os.WriteFile(filepath.Join(dir, "berth.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustBerth("start", name)
	pid := qemuPID(t, dir)
	return pid
}

// qemuPID finds the QEMU process whose command line names the instance directory.
func qemuPID(t testing.TB, dir string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cl := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, dir) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	t.Fatalf("no QEMU process for %s", dir)
	return 0
}

// rssBytes is a process's resident memory (VmRSS).
// touchGiB runs a container that writes 1 GiB into a tmpfs and exits, and returns the VM
// process's RSS just before it and at its peak.
func touchGiB(tb testing.TB, e *env, pid int) (before, peak uint64) {
	tb.Helper()
	time.Sleep(5 * time.Second)
	before = rssBytes(tb, pid)
	peak = before
	done := make(chan error, 1)
	go func() {
		_, err := e.docker_(nil, "run", "--rm", "--tmpfs", "/t:size=1100m", "bb:idle",
			"dd", "if=/dev/zero", "of=/t/x", "bs=1M", "count=1024")
		done <- err
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				tb.Fatalf("1 GiB container: %v", err)
			}
			return before, max(peak, rssBytes(tb, pid))
		case <-time.After(500 * time.Millisecond):
			peak = max(peak, rssBytes(tb, pid))
		}
	}
}

func rssBytes(t testing.TB, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// processCPU is the CPU time pid used, its ended threads included: utime + stime of
// /proc/PID/stat (in USER_HZ, 100 on Linux). The per-thread schedstat sum (procCPU) is
// finer but loses the time of threads that ended between two readings, and QEMU's I/O
// worker threads come and go.
func processCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // from field 3, state
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// cpuShare is the share of one core pid used over d.
func cpuShare(t testing.TB, pid int, d time.Duration) float64 {
	t.Helper()
	c0 := processCPU(t, pid)
	s0, _ := procCPU(pid)
	start := time.Now()
	time.Sleep(d)
	c1 := processCPU(t, pid)
	s1, _ := procCPU(pid)
	el := time.Since(start)
	t.Logf("pid %d over %s: %s of CPU (/proc stat), %s (thread schedstat sum)", pid, el.Round(time.Second), c1-c0, s1-s0)
	return float64(c1-c0) / float64(el)
}

// waitForState polls `berth status --json` until the instance is in state.
func waitForState(t testing.TB, e *env, name, state string, within time.Duration) api.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := e.status(name)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance is %s after %s, want %s", st.State, within, state)
		}
		time.Sleep(time.Second)
	}
}

// guestClockOffset runs `date +%s.%N` in the guest and returns guest minus host (the host
// time taken half-way through the command).
func guestClockOffset(t testing.TB, e *env, name string) time.Duration {
	t.Helper()
	start := time.Now()
	out, err := e.berth("shell", name, "--", "date", "+%s.%N")
	end := time.Now()
	if err != nil {
		t.Fatalf("berth shell date: %v: %s", err, out)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		t.Fatalf("date printed %q", out)
	}
	// The guest read its clock between start and end: only a time outside that window is
	// an offset we can tell.
	guest := time.Unix(0, int64(f*1e9))
	var off time.Duration
	switch {
	case guest.Before(start):
		off = guest.Sub(start)
	case guest.After(end):
		off = guest.Sub(end)
	}
	t.Logf("guest clock offset %s (outside the %s the command took; %s from its middle)", off, end.Sub(start), guest.Sub(start.Add(end.Sub(start)/2)))
	return off
}

// logHostdLines logs the lines of the instance's hostd.log that contain any of words.
func logHostdLines(t testing.TB, e *env, name string, words ...string) {
	b, err := os.ReadFile(filepath.Join(e.home, name, "hostd.log"))
	if err != nil {
		t.Logf("hostd.log: %v", err)
		return
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > 40 {
		out = out[len(out)-40:]
	}
	t.Logf("hostd.log (%s):\n%s", strings.Join(words, ", "), strings.Join(out, "\n"))
}

func within(d, bound time.Duration) bool { return d < bound && d > -bound }

// pauseSettle is how long after the pause the paused VM's CPU is measured from.
const pauseSettle = 5 * time.Second

// installCompose makes `docker compose` work in e: the plugin `make build` puts beside
// berth is copied into the env's docker config. It reports whether compose runs.
func installCompose(t testing.TB, e *env) bool {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(berthBin(t)), "cli-plugins", "docker-compose")); err == nil {
		dir := filepath.Join(e.docker, "cli-plugins")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "docker-compose"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.docker_(nil, "compose", "version")
	return err == nil
}

// TestIdlePause: issue 16's acceptance for the idle pause, the clock and memory return, on
// one VM under QEMU.
func TestIdlePause(t *testing.T) {
	e := newEnv(t)
	const name = "default" // the harness's docker commands use its context, "berth"
	pid := startIdleInstance(t, e, name, idlePauseAfter)
	e.busyboxImage("bb:idle")

	t.Run("PausesWhenIdle", func(t *testing.T) {
		st := waitForState(t, e, name, api.StatePaused, idlePauseAfter+90*time.Second)
		if st.Idle == nil || st.Idle.PausedAt.IsZero() || st.Idle.Containers != 0 {
			t.Fatalf("idle status: %+v", st.Idle)
		}
		// What the paused VM costs for as long as it stays paused, measured from a few
		// seconds after the pause: one CI run saw 420 ms of QEMU CPU in the 30 s starting
		// at the pause (1.4 %) where steady 5 s windows of a paused VM read 0 ms.
		time.Sleep(pauseSettle)
		share := cpuShare(t, pid, 30*time.Second)
		t.Logf("QEMU CPU while paused: %.3f%% of a core", share*100)
		if share >= 0.01 {
			t.Fatalf("QEMU used %.2f%% of a core over 30 s while paused, want < 1%%", share*100)
		}
		if st := e.status(name); st.State != api.StatePaused {
			t.Fatalf("status calls woke the VM: %s", st.State)
		}
	})

	// Each client resumes a paused VM and succeeds at the first try.
	clients := []struct {
		what string
		run  func() (string, error)
	}{
		{"docker ps", func() (string, error) { return e.docker_(nil, "ps") }},
		{"docker run", func() (string, error) { return e.docker_(nil, "run", "--rm", "bb:idle", "echo", "hello") }},
		{"berth shell", func() (string, error) { return e.berth("shell", name, "--", "true") }},
		{"docker compose ps", func() (string, error) {
			return e.docker_(nil, "compose", "--project-directory", e.root, "-p", "idle", "ps")
		}},
	}
	compose := installCompose(t, e)
	for _, c := range clients {
		t.Run("Resume/"+strings.ReplaceAll(c.what, " ", "_"), func(t *testing.T) {
			if strings.Contains(c.what, "compose") && !compose {
				t.Skip("no docker compose plugin beside BERTH_BIN (make build puts it there) or in the docker CLI")
			}
			e.mustBerth("pause", name)
			if st := e.status(name); st.State != api.StatePaused {
				t.Fatalf("after berth pause: %s", st.State)
			}
			start := time.Now()
			if out, err := c.run(); err != nil {
				t.Fatalf("%s on a paused VM failed: %v\n%s", c.what, err, out)
			}
			t.Logf("%s on a paused VM took %s", c.what, time.Since(start))
			if st := e.status(name); st.State != api.StateRunning {
				t.Fatalf("after %s: %s, want Running", c.what, st.State)
			}
		})
	}

	t.Run("ContainerKeepsAwake", func(t *testing.T) {
		e.mustDocker("run", "-d", "--name", "sleeper", "bb:idle", "sleep", "3600")
		// An open `docker logs -f` on it, too.
		ctx, cancel := context.WithCancel(context.Background())
		logs := e.dockerCmd(ctx, "logs", "-f", "sleeper")
		if err := logs.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); logs.Wait() }()
		time.Sleep(idlePauseAfter + 15*time.Second)
		if st := e.status(name); st.State != api.StateRunning || st.Idle == nil || st.Idle.Containers != 1 {
			t.Fatalf("with a running container: %s, idle %+v", st.State, st.Idle)
		}
		e.mustDocker("rm", "-f", "sleeper")
	})

	t.Run("ShellKeepsAwake", func(t *testing.T) {
		start := time.Now()
		out, err := e.berth("shell", name, "--", "sleep", strconv.Itoa(int((idlePauseAfter + 10*time.Second).Seconds())))
		if err != nil {
			t.Fatalf("berth shell sleep: %v: %s", err, out)
		}
		if st := e.status(name); st.State != api.StateRunning {
			t.Fatalf("right after a %s shell session: %s, want Running", time.Since(start), st.State)
		}
	})

	t.Run("ClockAfterResume", func(t *testing.T) {
		e.mustBerth("pause", name)
		time.Sleep(45 * time.Second)
		if off := guestClockOffset(t, e, name); !within(off, 500*time.Millisecond) {
			t.Fatalf("guest clock %s off right after a 45 s pause, want within 0.5 s", off)
		}
		st := e.status(name)
		t.Logf("status clock: %+v", st.Clock)
		if st.Clock == nil || st.Clock.Reason == "" {
			t.Fatalf("status --json has no clock: %+v", st.Clock)
		}
	})

	t.Run("ClockAfterSIGSTOP", func(t *testing.T) {
		// A running container keeps the idle pause out of the way.
		e.mustDocker("run", "-d", "--name", "holder", "bb:idle", "sleep", "3600")
		defer e.docker_(nil, "rm", "-f", "holder")
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Second)
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		off := guestClockOffset(t, e, name)
		st := e.status(name)
		t.Logf("status clock: %+v; idle: %+v", st.Clock, st.Idle)
		logHostdLines(t, e, name, "clock", "pause", "resum", "agent")
		if !within(off, 500*time.Millisecond) {
			t.Fatalf("guest clock %s off 10 s after a 60 s SIGSTOP, want within 0.5 s", off)
		}
	})

	t.Run("MemoryBack", func(t *testing.T) {
		before, peak := touchGiB(t, e, pid)
		exited := time.Now()
		var after uint64
		for time.Since(exited) < 30*time.Second {
			time.Sleep(time.Second)
			after = rssBytes(t, pid)
			if float64(after) <= float64(before)*1.15 {
				break
			}
		}
		t.Logf("QEMU RSS: before %d MiB, peak %d MiB, %s after exit %d MiB", before>>20, peak>>20, time.Since(exited).Round(time.Second), after>>20)
		if peak < before+768<<20 {
			t.Fatalf("peak %d MiB is not 1 GiB above %d MiB: the container did not touch its memory", peak>>20, before>>20)
		}
		if float64(after) > float64(before)*1.15 {
			t.Fatalf("RSS %d MiB 30 s after the container exited, want within 15%% of %d MiB", after>>20, before>>20)
		}
	})
}
