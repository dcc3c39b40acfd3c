//go:build linux

package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// withHeartbeat sets the session heartbeat's timing for one test.
func withHeartbeat(t *testing.T, tick, ping, timeout, every time.Duration) {
	oTick, oPing, oTimeout, oEvery := clockTick, pingEvery, pingTimeout, clockEvery
	clockTick, pingEvery, pingTimeout, clockEvery = tick, ping, timeout, every
	t.Cleanup(func() { clockTick, pingEvery, pingTimeout, clockEvery = oTick, oPing, oTimeout, oEvery })
}

// TestHeartbeatPeriodicClock: the one heartbeat timer asks for the periodic clock check
// every clockEvery, and asks for none while the VM is paused.
func TestHeartbeatPeriodicClock(t *testing.T) {
	withHeartbeat(t, 20*time.Millisecond, 40*time.Millisecond, 5*time.Second, 150*time.Millisecond)
	p := newPausableVM(t, "/nonexistent")
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	ctx := startPausable(t, d, p)

	checkedAt := func(reason string) time.Time {
		t.Helper()
		d.mu.Lock()
		defer d.mu.Unlock()
		if c := d.status.Clock; c != nil && c.Reason == reason && c.Error == "" {
			return c.CheckedAt
		}
		return time.Time{}
	}
	var seen []time.Time
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		if at := checkedAt(clockPeriodic); !at.IsZero() && (len(seen) == 0 || at.After(seen[len(seen)-1])) {
			seen = append(seen, at)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(seen) < 3 {
		t.Fatalf("periodic clock checks seen: %v, want 3 within 5 s (clockEvery %s)", seen, clockEvery)
	}
	if gap := seen[2].Sub(seen[1]); gap < clockEvery/2 {
		t.Errorf("periodic checks %s apart, want about clockEvery (%s)", gap, clockEvery)
	}

	if err := d.pauseVM(ctx, true); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	before := d.status.Clock.CheckedAt
	d.mu.Unlock()
	time.Sleep(4 * clockEvery)
	d.mu.Lock()
	after := d.status.Clock.CheckedAt
	d.mu.Unlock()
	if !after.Equal(before) {
		t.Errorf("the clock was checked while the VM was paused (%s, then %s)", before, after)
	}
	if err := d.resumeVM(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	if st := d.Status(); st.State != api.StateRunning {
		t.Fatalf("after resume: %s", st.State)
	}
}

// TestHeartbeatGivesUpHungAgent: the heartbeat's ping ends the session of an agent that
// stopped answering while the VM was not paused by hostd (a hung agent), and notices a
// slow answer as a stall (the clock is checked for it).
func TestHeartbeatGivesUpHungAgent(t *testing.T) {
	withHeartbeat(t, 20*time.Millisecond, 20*time.Millisecond, stallThreshold+time.Second, time.Hour)
	p := newPausableVM(t, "/nonexistent")
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	startPausable(t, d, p)
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		c := d.status.Clock
		d.mu.Unlock()
		if c != nil && c.Reason == clockSession {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no clock check at the session's start")
		}
	}

	// Stood still for longer than stallThreshold but answers within pingTimeout: a stall.
	p.Pause(context.Background()) // behind hostd's back, as SIGSTOP
	time.Sleep(stallThreshold + 200*time.Millisecond)
	p.Resume(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		c := d.status.Clock
		d.mu.Unlock()
		if c != nil && c.Reason == clockStall {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stall clock check after the VM stood still (last check %+v)", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if agent.closed() {
		t.Fatal("the session was given up for a slow answer within pingTimeout")
	}

	// Stands still past pingTimeout: the session is given up.
	p.Pause(context.Background())
	select {
	case <-agent.done():
	case <-time.After(pingTimeout + 5*time.Second):
		t.Fatal("the heartbeat did not give up on an agent that stopped answering")
	}
	p.Resume(context.Background())
}
