package daemon

import (
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)} }
func wantDue(t *testing.T, tr *idleTracker, want bool, what string) time.Duration {
	t.Helper()
	due, wait := tr.due()
	if due != want {
		t.Fatalf("%s: due = %v, want %v (wait %s)", what, due, want, wait)
	}
	return wait
}

// TestIdleTracker: the VM is due for a pause only after pauseAfter with no running
// container, no open client stream and no docker request waiting for its answer.
func TestIdleTracker(t *testing.T) {
	c := newFakeClock()
	tr := newIdleTracker(5*time.Minute, c.now)

	// Until the agent reported its containers nothing is known: never due.
	c.add(time.Hour)
	wantDue(t, tr, false, "containers unknown")

	tr.setContainers(0)
	c.add(4 * time.Minute)
	if wait := wantDue(t, tr, false, "4m idle"); wait != time.Minute {
		t.Fatalf("wait = %s, want 1m", wait)
	}
	c.add(time.Minute)
	wantDue(t, tr, true, "5m idle")

	// A running container keeps it awake however long; its exit starts the delay anew.
	tr.setContainers(1)
	c.add(time.Hour)
	wantDue(t, tr, false, "container running")
	tr.setContainers(0)
	c.add(4*time.Minute + 59*time.Second)
	wantDue(t, tr, false, "just under 5m after the container exited")
	c.add(time.Second)
	wantDue(t, tr, true, "5m after the container exited")

	// An open client stream (shell, port connection) keeps it awake while open.
	release, wake := tr.hold()
	if wake {
		t.Fatal("hold on an awake VM asked for a wake")
	}
	c.add(time.Hour)
	wantDue(t, tr, false, "stream open")
	release()
	release() // a second release changes nothing
	wantDue(t, tr, false, "stream just closed")
	c.add(5 * time.Minute)
	wantDue(t, tr, true, "5m after the stream closed")

	// A docker connection is busy from a client's bytes until the guest answers; one that
	// only sits open (keep-alive, `docker events`) is not.
	var conn bool
	tr.io(&conn, true)
	c.add(time.Hour)
	wantDue(t, tr, false, "request waiting for its answer")
	tr.io(&conn, false)
	tr.io(&conn, false)
	c.add(5 * time.Minute)
	wantDue(t, tr, true, "answered connection left open")

	// Off: never due.
	off := newIdleTracker(0, c.now)
	off.setContainers(0)
	c.add(24 * time.Hour)
	wantDue(t, off, false, "pauseAfter 0")
}

// TestIdleTrackerPauseRace: a client that comes while a pause is being made learns that it
// must wake the VM; a pause whose conditions changed since it was scheduled is dropped.
func TestIdleTrackerPauseRace(t *testing.T) {
	c := newFakeClock()
	tr := newIdleTracker(time.Minute, c.now)
	tr.setContainers(0)
	c.add(time.Minute)
	wantDue(t, tr, true, "idle")
	// Activity between the due check and the pause: the pause is dropped.
	release, _ := tr.hold()
	if err := tr.beginPause(false); err == nil {
		t.Fatal("pause went ahead with a client stream open")
	}
	release()
	c.add(time.Minute)
	_, epoch := tr.paused()
	if err := tr.beginPause(false); err != nil {
		t.Fatal(err)
	}
	if p, e := tr.paused(); !p || e != epoch+1 {
		t.Fatalf("paused = %v epoch %d, want true, %d", p, e, epoch+1)
	}
	// A client now must wake the VM, also while the pause is only in progress.
	release, wake := tr.hold()
	if !wake {
		t.Fatal("a client during a pause was not told to wake the VM")
	}
	tr.endPause(true)
	var conn bool
	if !tr.io(&conn, true) {
		t.Fatal("docker bytes on a paused VM did not ask for a wake")
	}
	if err := tr.beginPause(true); err != errAlreadyPaused {
		t.Fatalf("second pause: %v, want errAlreadyPaused", err)
	}
	tr.resumed(3 * time.Millisecond)
	release()
	tr.io(&conn, false)
	s := tr.snapshot(true)
	if s.Pauses != 1 || s.Resumes != 1 || s.LastResume != 3*time.Millisecond || !s.PausedAt.IsZero() || s.Clients != 0 {
		t.Fatalf("snapshot = %+v", s)
	}
	// Forced (berth pause) ignores activity.
	tr.hold()
	if err := tr.beginPause(true); err != nil {
		t.Fatalf("forced pause: %v", err)
	}
}

func TestHostSlept(t *testing.T) {
	for _, tc := range []struct {
		mono, wall time.Duration
		want       bool
	}{
		{5 * time.Second, 5 * time.Second, false},
		{5 * time.Second, 5*time.Second + 300*time.Millisecond, false}, // NTP slew, scheduling
		{5 * time.Second, 65 * time.Second, true},                      // slept a minute
		{5 * time.Second, 3 * time.Second, true},                       // wall clock set back
	} {
		if got := hostSlept(tc.mono, tc.wall, time.Second); got != tc.want {
			t.Errorf("hostSlept(%s, %s) = %v, want %v", tc.mono, tc.wall, got, tc.want)
		}
	}
}

// TestIdleTrackerQuiet: quiet (the heartbeat's slower pings) once nothing has kept the VM
// awake for the given time, whatever the pause delay; never while containers are unknown
// or run, or a client is there.
func TestIdleTrackerQuiet(t *testing.T) {
	c := newFakeClock()
	tr := newIdleTracker(0, c.now) // pausing off: quiet all the same
	c.add(time.Hour)
	if tr.quiet(30 * time.Second) {
		t.Fatal("quiet while the containers are unknown")
	}
	tr.setContainers(0)
	c.add(29 * time.Second)
	if tr.quiet(30 * time.Second) {
		t.Fatal("quiet 29 s after the container count changed")
	}
	c.add(time.Second)
	if !tr.quiet(30 * time.Second) {
		t.Fatal("not quiet 30 s after the last change")
	}
	release, _ := tr.hold()
	c.add(time.Hour)
	if tr.quiet(30 * time.Second) {
		t.Fatal("quiet while a client holds the VM")
	}
	release()
	if tr.quiet(30 * time.Second) {
		t.Fatal("quiet right after the client left")
	}
	tr.setContainers(1)
	c.add(time.Hour)
	if tr.quiet(30 * time.Second) {
		t.Fatal("quiet while a container runs")
	}
}
