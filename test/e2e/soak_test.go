//go:build e2e && soak

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// The soaks: the long versions of the reliability checks (docs/reliability.md), run by
// `make soak`, each bounded in time and count.

// TestSoakStreams: 200 `docker logs -f` and 50 `docker exec -i` on chatty containers, all
// killed mid-stream; hostd's goroutines and fds come back to their baseline and the guest's
// engine connections close.
func TestSoakStreams(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start")
	e.busyboxImage(image)
	for i := range 8 {
		e.mustDocker("run", "-d", "--name", fmt.Sprintf("chatty%d", i), image, "sh", "-c", "while true; do echo chatty line; usleep 50000; done")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(logs, execs int) []*exec.Cmd {
		var cs []*exec.Cmd
		for i := range logs {
			cs = append(cs, e.dockerCmd(ctx, "logs", "-f", fmt.Sprintf("chatty%d", i%8)))
		}
		for i := range execs {
			c := e.dockerCmd(ctx, "exec", "-i", fmt.Sprintf("chatty%d", i%8), "cat")
			c.Stdin = strings.NewReader(strings.Repeat("x", 1<<20))
			cs = append(cs, c)
		}
		for _, c := range cs {
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
		}
		return cs
	}
	kill := func(cs []*exec.Cmd) {
		for _, c := range cs {
			c.Process.Signal(syscall.SIGKILL)
			c.Wait()
		}
	}
	kill(start(4, 2))
	time.Sleep(5 * time.Second)
	base, baseFDs := e.hostdStats(t), e.agentFDs(t)
	cs := start(200, 50)
	time.Sleep(30 * time.Second)
	peak := e.hostdStats(t)
	t.Logf("baseline %+v (agent fds %d), with %d clients %+v", base, baseFDs, len(cs), peak)
	kill(cs)
	within := func(v, b int) bool { return v <= b+b/10+2 }
	waitFor(t, "hostd's goroutines, fds and RSS back to within 10 % of their baseline", 30*time.Second, func() bool {
		s := e.hostdStats(t)
		return within(s.Goroutines, base.Goroutines) && within(s.FDs, base.FDs) && s.RSSBytes <= base.RSSBytes+base.RSSBytes/10
	})
	waitFor(t, "the agent's engine connections closed", 30*time.Second, func() bool { return e.agentFDs(t) <= baseFDs+1 })
	t.Logf("after: %+v", e.hostdStats(t))
}

// TestSoakSaveLoad: `docker save | docker load` of a 2 GiB image through the socket, and a
// save killed halfway that leaves nothing behind.
func TestSoakSaveLoad(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start", "--disk", "16")
	e.busyboxImage(image)
	e.mustDocker("run", "--name", "big", image, "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=2048")
	e.mustDocker("commit", "big", "berth-e2e/big:1")
	e.mustDocker("rm", "big")
	base, baseFDs := e.hostdStats(t), e.agentFDs(t)

	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	save := e.dockerCmd(ctx, "save", "berth-e2e/big:1")
	load := e.dockerCmd(ctx, "load")
	pr, pw := io.Pipe()
	save.Stdout, load.Stdin = pw, pr
	var loadOut strings.Builder
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	if err := save.Run(); err != nil {
		t.Fatalf("docker save: %v", err)
	}
	pw.Close()
	if err := load.Wait(); err != nil {
		t.Fatalf("docker load: %v: %s", err, loadOut.String())
	}
	took := time.Since(t0)
	t.Logf("save|load of 2 GiB: %s (%.1f MiB/s each way)", took.Round(time.Second), 2048/took.Seconds())

	// Killed halfway.
	half := e.dockerCmd(ctx, "save", "berth-e2e/big:1")
	out, _ := half.StdoutPipe()
	if err := half.Start(); err != nil {
		t.Fatal(err)
	}
	io.CopyN(io.Discard, bufio.NewReader(out), 1<<30)
	half.Process.Signal(syscall.SIGINT)
	half.Wait()
	waitFor(t, "hostd back to baseline after the interrupted save", 30*time.Second, func() bool {
		s := e.hostdStats(t)
		return s.Goroutines <= base.Goroutines+base.Goroutines/10+2 && s.FDs <= base.FDs+base.FDs/10+2
	})
	waitFor(t, "the agent's engine connections closed", 30*time.Second, func() bool { return e.agentFDs(t) <= baseFDs+1 })
}

// TestSoakStartStop: 20 start/stop cycles leave no process, socket file, listener or pid
// file behind.
func TestSoakStartStop(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		e.mustBerth("start")
		if st := e.status("default"); st.State != api.StateRunning {
			t.Fatalf("cycle %d: state %s", i, st.State)
		}
		e.mustBerth("stop")
		e.assertNothingRunning(t, "default")
		if t.Failed() {
			t.Fatalf("cycle %d left something behind", i)
		}
	}
	if _, err := os.Stat(e.home); err != nil {
		t.Fatal(err)
	}
}
