//go:build !windows

package instance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

func splitLines(s string) []string { return strings.Fields(s) }

// newInstance makes an instance under a private BERTH_HOME, with a spawn record file.
func newInstance(t *testing.T, name string) (*store.Instance, string) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("BERTH_HOME", home)
	inst, err := store.Create(name, store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return inst, filepath.Join(home, "spawns")
}

// stopAtEnd makes sure no fake daemon outlives the test.
func stopAtEnd(t *testing.T, inst *store.Instance) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if inst.DaemonPID() != 0 {
			Stop(ctx, inst, true)
		}
	})
}

// checkLog checks that hostd.log is one daemon's whole story: no holes (NUL bytes from a
// truncation under a writer), no loser's "daemon exiting", and the phases from the start
// to want.
func checkLog(t *testing.T, inst *store.Instance, pid int, want ...string) {
	t.Helper()
	b, err := os.ReadFile(inst.Path(store.HostdLog))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("hostd.log has NUL bytes: it was truncated under a writer:\n%q", b)
	}
	if bytes.Contains(b, []byte("daemon exiting")) {
		t.Errorf("hostd.log holds a losing daemon's exit:\n%s", b)
	}
	log := string(b)
	if !strings.HasPrefix(log, "time=") || !strings.Contains(strings.SplitN(log, "\n", 2)[0], "daemon starting") {
		t.Errorf("hostd.log does not begin with the daemon's start:\n%s", log)
	}
	at := 0
	for _, w := range append([]string{"daemon starting", "phase=prepare done=false"}, want...) {
		i := strings.Index(log[at:], w)
		if i < 0 {
			t.Errorf("hostd.log lacks %q (after offset %d):\n%s", w, at, log)
			return
		}
		at += i
	}
	if other := fmt.Sprintf("pid=%d ", pid); strings.Count(log, "pid=") != strings.Count(log, other) {
		t.Errorf("hostd.log has lines of a daemon other than pid %d:\n%s", pid, log)
	}
}

// TestConcurrentStartOneDaemon is the race of the issue: 8 starts of one instance at once
// (the CLI's path: lock, check, spawn, follow). Before the start lock each of them passed
// the "no daemon yet" check, truncated hostd.log and spawned a daemon; the losers' daemons
// failed on the daemon lock and wrote that into the winner's log, and a loser whose poll
// reached the winner's socket followed its events and reported success as well.
func TestConcurrentStartOneDaemon(t *testing.T) {
	inst, spawnFile := newInstance(t, "default")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile, "BERTH_FAKE_PHASE=150ms")
	stopAtEnd(t, inst)

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	phases := make([]int, n)
	gate := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-gate
			errs[i] = Start(t.Context(), inst, func(ev api.Event) {
				if ev.Done {
					phases[i]++
				}
			})
		})
	}
	close(gate)
	wg.Wait()

	winners := 0
	for i, err := range errs {
		switch {
		case err == nil:
			winners++
			if phases[i] != 5 {
				t.Errorf("the winner saw %d phases done, want 5", phases[i])
			}
		case errors.Is(err, ErrStarting) || errors.Is(err, ErrRunning):
			msg := err.Error()
			if !strings.Contains(msg, `instance "default" is already starting`) && !strings.Contains(msg, `instance "default" is already running`) {
				t.Errorf("loser %d: unclear message %q", i, msg)
			}
			if !strings.Contains(msg, "pid ") {
				t.Errorf("loser %d: message names no pid: %q", i, msg)
			}
			if phases[i] != 0 {
				t.Errorf("loser %d followed %d phases of the winner's start", i, phases[i])
			}
		default:
			t.Errorf("start %d: %v", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d starts reported success, want 1", winners)
	}
	pids := spawns(t, spawnFile)
	if len(pids) != 1 {
		t.Errorf("%d daemons spawned (%v), want 1", len(pids), pids)
	}
	if len(pids) == 0 {
		t.FailNow()
	}
	if got := inst.DaemonPID(); got != pids[0] {
		t.Errorf("daemon pid %d, spawned %d", got, pids[0])
		pids[0] = got
	}
	if st, _ := Status(t.Context(), inst); st.State != api.StateRunning {
		t.Errorf("state %s, want Running", st.State)
	}
	checkLog(t, inst, pids[0], "phase=socket done=true", "state=Running")

	// A start now finds the daemon: the message of a running instance, and the log of the
	// running daemon stays as it is.
	before, _ := os.ReadFile(inst.Path(store.HostdLog))
	err := Start(t.Context(), inst, nil)
	want := fmt.Sprintf("instance \"default\" is already running (daemon pid %d); use `berth restart default` to restart it", pids[0])
	if !errors.Is(err, ErrRunning) || err == nil || err.Error() != want {
		t.Errorf("start while running: %v, want %q", err, want)
	}
	if after, _ := os.ReadFile(inst.Path(store.HostdLog)); !bytes.Equal(before, after) {
		t.Errorf("a refused start changed hostd.log")
	}

	if err := Stop(t.Context(), inst, false); err != nil {
		t.Fatal(err)
	}
	if inst.DaemonPID() != 0 {
		t.Error("daemon still holds the instance after stop")
	}
	checkLog(t, inst, pids[0], "state=Running", "daemon stopped")
	if got := len(spawns(t, spawnFile)); got != 1 {
		t.Errorf("%d daemons spawned", got)
	}
}

// TestStartRefusedWhileLocked checks the loser's message word for word, for a start and
// for a delete holding the lock.
func TestStartRefusedWhileLocked(t *testing.T) {
	inst, spawnFile := newInstance(t, "dev")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile)
	s, err := LockStart(inst)
	if err != nil {
		t.Fatal(err)
	}
	err = Start(t.Context(), inst, nil)
	want := fmt.Sprintf("instance \"dev\" is already starting (pid %d); run `berth status dev`", os.Getpid())
	if !errors.Is(err, ErrStarting) || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if err := Delete(t.Context(), inst, false, false); err == nil || !strings.Contains(err.Error(), "is already starting") || !strings.Contains(err.Error(), "pass --force") {
		t.Errorf("delete during a start: %v", err)
	}
	s.Release()
	s.Release() // twice is fine

	l, err := inst.LockOp("delete")
	if err != nil {
		t.Fatal(err)
	}
	err = Start(t.Context(), inst, nil)
	if !errors.Is(err, ErrStarting) || err.Error() != fmt.Sprintf("instance \"dev\" is being deleted (pid %d)", os.Getpid()) {
		t.Errorf("start during a delete: %v", err)
	}
	l.Release()
	if n := len(spawns(t, spawnFile)); n != 0 {
		t.Errorf("%d daemons spawned by refused starts", n)
	}
}

// TestStartWaitsForExitingDaemon: a start right after the instance stopped or failed, while
// its daemon still releases what it held (state Stopped or Error, lock held), used to be
// refused with "is stopping" (TestReliability's start right after kill -9 of the VM). It
// now waits for that daemon to exit and starts a new one.
func TestStartWaitsForExitingDaemon(t *testing.T) {
	inst, spawnFile := newInstance(t, "dev")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile, "BERTH_FAKE_PHASE=10ms", "BERTH_FAKE_EXIT_DELAY=1500ms")
	stopAtEnd(t, inst)
	if err := Start(t.Context(), inst, nil); err != nil {
		t.Fatal(err)
	}
	first := inst.DaemonPID()
	stopped := make(chan error, 1)
	go func() { stopped <- Stop(t.Context(), inst, false) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10 s", what)
			}
		}
	}
	waitFor("Stopped state from the exiting daemon", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		st, err := Client(inst).Status(ctx)
		return err == nil && st.State == api.StateStopped
	})
	if err := Start(t.Context(), inst, nil); err != nil {
		t.Fatalf("start while the stopped daemon exits: %v", err)
	}
	if pid := inst.DaemonPID(); pid == 0 || pid == first {
		t.Errorf("daemon pid %d after the start, the exited one was %d", pid, first)
	}
	if n := len(spawns(t, spawnFile)); n != 2 {
		t.Errorf("%d daemons spawned, want 2", n)
	}
	<-stopped

	// One that does not exit in time: the start says so instead of waiting on.
	old := exitingWait
	exitingWait = 200 * time.Millisecond
	defer func() { exitingWait = old }()
	go func() { stopped <- Stop(t.Context(), inst, false) }()
	waitFor("Stopped state from the exiting daemon", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		st, err := Client(inst).Status(ctx)
		return err == nil && st.State == api.StateStopped
	})
	if err := Start(t.Context(), inst, nil); !errors.Is(err, ErrStarting) || !strings.Contains(err.Error(), "is stopping") {
		t.Errorf("start while a daemon takes too long to exit: %v", err)
	}
	<-stopped
}

// TestStopWaitsForPendingStart: a stop that comes while a start holds the lock but has not
// spawned its daemon yet used to answer "not running", and the start then brought the VM
// up after the stop. Now the stop waits for the daemon and stops it.
func TestStopWaitsForPendingStart(t *testing.T) {
	inst, spawnFile := newInstance(t, "default")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile, "BERTH_FAKE_PHASE=1s")
	stopAtEnd(t, inst)
	s, err := LockStart(inst)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	stopped := make(chan error, 1)
	var took time.Duration
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		t0 := time.Now()
		err := Stop(ctx, inst, true)
		took = time.Since(t0)
		stopped <- err
	}()
	select {
	case err := <-stopped:
		t.Fatalf("stop returned while the start was pending: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	err = s.Start(t.Context(), nil)
	if err == nil || !strings.Contains(err.Error(), "stopped during start") {
		t.Errorf("start interrupted by a stop: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("stop took %s", took)
	if inst.DaemonPID() != 0 {
		t.Error("daemon still holds the instance")
	}
	if n := len(spawns(t, spawnFile)); n != 1 {
		t.Errorf("%d daemons spawned", n)
	}
	checkLog(t, inst, spawns(t, spawnFile)[0], "stop requested during boot", "state=Stopped")

	// Without a start in progress a stop still answers "not running" at once.
	s.Release()
	if err := Stop(t.Context(), inst, false); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stop of a stopped instance: %v", err)
	}
}

// TestStopBeforeControlSocket: a daemon has taken its lock but not yet bound its control
// socket. The stop used to fail with "connection refused" / "no such file"; now it asks
// again until the daemon answers.
func TestStopBeforeControlSocket(t *testing.T) {
	inst, spawnFile := newInstance(t, "default")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile, "BERTH_FAKE_SOCK_DELAY=700ms", "BERTH_FAKE_PHASE=1s")
	stopAtEnd(t, inst)
	started := make(chan error, 1)
	go func() { started <- Start(t.Context(), inst, nil) }()
	deadline := time.Now().Add(10 * time.Second)
	for inst.DaemonPID() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no daemon appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(inst.Path(store.ControlSock)); err == nil {
		t.Fatal("the control socket is already there; the test needs it absent")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := Stop(ctx, inst, true); err != nil {
		t.Errorf("stop before the control socket: %v", err)
	}
	if err := <-started; err == nil {
		t.Error("start reported success although stopped during boot")
	}
	if inst.DaemonPID() != 0 {
		t.Error("daemon still holds the instance")
	}
}

// TestDeleteForceDuringStart: delete --force while a start boots stops the daemon, waits
// for the start to let go, and deletes; no daemon is left.
func TestDeleteForceDuringStart(t *testing.T) {
	inst, spawnFile := newInstance(t, "default")
	useFakeHostd(t, "BERTH_FAKE_SPAWNS="+spawnFile, "BERTH_FAKE_PHASE=1s")
	stopAtEnd(t, inst)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	started := make(chan error, 1)
	go func() { started <- Start(t.Context(), inst, nil) }()
	for inst.DaemonPID() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := Delete(ctx, inst, false, true); err != nil {
		t.Fatalf("delete --force during start: %v", err)
	}
	if err := <-started; err == nil {
		t.Error("start reported success although deleted during boot")
	}
	if inst.DaemonPID() != 0 {
		t.Error("daemon still holds the instance")
	}
	if _, err := os.Stat(inst.Path(store.ConfigFile)); err == nil {
		t.Error("config still there after delete")
	}
}
