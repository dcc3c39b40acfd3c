//go:build !windows

package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
)

func runBerth(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestStartWhileStarting: a start that finds another start of the instance in progress
// fails at once with a clear message, and touches nothing: not the config (even with
// flags), not the daemon's log, and it spawns no daemon.
func TestStartWhileStarting(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := store.Create("dev", store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(inst.Path(store.HostdLog), []byte("the winner's log\n"), 0o600)
	cfgBefore, _ := os.ReadFile(inst.Path(store.ConfigFile))
	s, err := instance.LockStart(inst) // the winner, between its check and its daemon
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()

	for _, args := range [][]string{{"start", "dev"}, {"start", "dev", "--cpus", "1"}, {"-p", "dev", "restart"}} {
		out, err := runBerth(t, args...)
		want := fmt.Sprintf("instance \"dev\" is already starting (pid %d); run `berth status dev`", os.Getpid())
		if err == nil || err.Error() != want {
			t.Errorf("%v: %v, want %q", args, err, want)
		}
		if strings.Contains(out, "Starting") {
			t.Errorf("%v: a refused start printed %q", args, out)
		}
	}
	if b, _ := os.ReadFile(inst.Path(store.ConfigFile)); !bytes.Equal(b, cfgBefore) {
		t.Errorf("a refused start changed the config:\n%s", b)
	}
	if b, _ := os.ReadFile(inst.Path(store.HostdLog)); string(b) != "the winner's log\n" {
		t.Errorf("a refused start changed hostd.log: %q", b)
	}
	if inst.DaemonPID() != 0 {
		t.Error("a refused start left a daemon")
	}
	if _, err := runBerth(t, "delete", "dev"); err == nil || !strings.Contains(err.Error(), "is already starting") {
		t.Errorf("delete during a start: %v", err)
	}
}

// TestStartWhileRunning keeps what `berth start` says about a running instance, and that
// it refuses changed settings while running, without writing them.
func TestStartWhileRunning(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := store.Create("dev", store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(inst.Path(store.HostdLog), []byte("the daemon's log\n"), 0o600)
	cfgBefore, _ := os.ReadFile(inst.Path(store.ConfigFile))
	lock, err := inst.TryLock() // a live daemon, as far as DaemonPID can tell
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid()})

	// Running already: say so, exit 0 (colima and Lima treat it as done).
	out, err := runBerth(t, "start", "dev", "--activate=false")
	want := fmt.Sprintf("Instance \"dev\" is already running (daemon pid %d); use `berth restart dev` to restart it\n", os.Getpid())
	if err != nil || out != want {
		t.Errorf("start: %q, %v; want %q", out, err, want)
	}
	_, err = runBerth(t, "start", "dev", "--cpus", "1")
	if err == nil || err.Error() != `instance "dev" is running; its settings change with a restart: berth restart dev --cpus 1` {
		t.Errorf("start --cpus: %v", err)
	}
	if b, _ := os.ReadFile(inst.Path(store.ConfigFile)); !bytes.Equal(b, cfgBefore) {
		t.Errorf("config changed while running:\n%s", b)
	}
	if b, _ := os.ReadFile(inst.Path(store.HostdLog)); string(b) != "the daemon's log\n" {
		t.Errorf("hostd.log changed: %q", b)
	}

	// A daemon that is still booting: "already starting", naming the daemon.
	inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid()})
	_, err = runBerth(t, "start", "dev")
	want = fmt.Sprintf("instance \"dev\" is already starting (daemon pid %d); run `berth status dev`", os.Getpid())
	if err == nil || err.Error() != want {
		t.Errorf("start while booting: %v, want %q", err, want)
	}
}
