//go:build !windows

package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/store"
)

// TestStopTimeoutSaysWhatToDo runs `berth stop --timeout` against an instance whose daemon
// holds the lock but never answers on its control socket: stop returns after the timeout,
// naming the state and the next step.
func TestStopTimeoutSaysWhatToDo(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := store.Create("hung", store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	inst.WriteState(store.State{State: "Stopping"})
	lock, err := inst.TryLock() // a live daemon, as far as DaemonPID can tell
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	ln, err := net.Listen("unix", inst.Path(store.ControlSock))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()

	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"stop", "hung", "--timeout", "300ms"}, []string{`instance "hung" did not stop within 300ms`, "Stopping (recorded; the daemon does not answer)", "berth stop --force hung", store.HostdLog}},
		{[]string{"stop", "hung", "--force", "--timeout", "200ms"}, []string{"did not stop within 200ms even with --force", "kill -9 "}},
	} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(tt.args)
		done := make(chan error, 1)
		go func() { done <- root.ExecuteContext(t.Context()) }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("%v: no error", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: error lacks %q:\n%v", tt.args, w, err)
				}
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%v: still waiting for a daemon that never answers", tt.args)
		}
	}
}
