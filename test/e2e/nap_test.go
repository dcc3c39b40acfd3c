//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestEngineNap: on an instance with no container and no client the agent stops the
// engine's daemons after its nap delay (guestagent.EngineNap, 30 s), also while a
// `docker events` watch is open; a docker client and a `docker` in `berth shell` each wake
// them and succeed at the first try, and the watch goes on receiving events. The idle pause
// is off, so the nap alone acts.
func TestEngineNap(t *testing.T) {
	e := newEnv(t)
	const name = "default" // the harness's docker commands use its context, "berth"
	startIdleInstance(t, e, name, 0)
	e.busyboxImage("bb:nap")
	count := func(what string) int {
		out, err := e.berth("logs", "agent")
		if err != nil {
			t.Fatalf("berth logs agent: %v\n%s", err, out)
		}
		return strings.Count(out, what)
	}
	const napped, woken = "engine napping", "engine woken"
	waitNap := func(after int) {
		t.Helper()
		waitFor(t, "the engine napped", 90*time.Second, func() bool {
			time.Sleep(3 * time.Second) // each look is a logged `berth logs agent`
			return count(napped) > after
		})
	}

	// A watch such as the tray's does not keep the engine awake.
	ctx, cancel := context.WithCancel(context.Background())
	events := &lockedBuffer{}
	watch := e.dockerCmd(ctx, "events", "--filter", "type=container", "--format", "{{.Action}}")
	watch.Stdout = events
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); watch.Wait() }()

	waitNap(0)
	w := count(woken)
	start := time.Now()
	if out := e.mustDocker("run", "--rm", "bb:nap", "echo", "hello"); !strings.Contains(out, "hello") {
		t.Fatalf("docker run on a napping engine: %q", out)
	}
	t.Logf("docker run on a napping engine took %s", time.Since(start))
	if count(woken) != w+1 {
		t.Fatalf("docker run did not wake the engine once:\n%s", e.mustBerth("logs", "agent"))
	}
	waitFor(t, "the open docker events saw the container start and die", 30*time.Second, func() bool {
		return strings.Contains(events.String(), "start") && strings.Contains(events.String(), "die")
	})

	waitNap(count(napped))
	start = time.Now()
	out, err := e.berth("shell", name, "--", "docker", "-H", "unix:///run/docker.sock", "version", "--format", "{{.Server.Version}}")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Fatalf("docker in berth shell on a napping engine: %v\n%s", err, out)
	}
	t.Logf("docker in berth shell on a napping engine took %s (engine %s)", time.Since(start), strings.TrimSpace(out))
}
