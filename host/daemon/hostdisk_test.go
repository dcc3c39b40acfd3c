package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// pausingDriver is a vm.Driver that reports I/O errors from errs and counts resumes; while
// pauseAgain is set a resume pauses the VM again at once, as QEMU does on a full host.
type pausingDriver struct {
	errs chan vm.IOError

	mu         sync.Mutex
	resumes    int
	pauseAgain bool
	resumeErr  error
}

func newPausingDriver() *pausingDriver { return &pausingDriver{errs: make(chan vm.IOError, 16)} }

func (p *pausingDriver) Start(context.Context) (<-chan error, error) { return nil, nil }
func (p *pausingDriver) Stop(context.Context, bool) error            { return nil }
func (p *pausingDriver) DialAgent(context.Context) (net.Conn, error) {
	return nil, errors.New("no agent")
}
func (p *pausingDriver) IOErrors() <-chan vm.IOError { return p.errs }

func (p *pausingDriver) Resume(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.resumes++
	if p.resumeErr != nil {
		return p.resumeErr
	}
	if p.pauseAgain {
		p.errs <- fullErr
	}
	return nil
}

func (p *pausingDriver) set(f func(p *pausingDriver)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *pausingDriver) resumeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resumes
}

var fullErr = vm.IOError{Device: "disk1", Path: "/home/u/.berth/default/data.img", NoSpace: true, Paused: true, Message: "No space left on device"}

// fakeFree is an injectable free-space function.
type fakeFree struct {
	mu   sync.Mutex
	free uint64
	err  error
	dirs []string
}

func (f *fakeFree) get(dir string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirs = append(f.dirs, dir)
	return f.free, f.err
}

func (f *fakeFree) set(free uint64, err error) {
	f.mu.Lock()
	f.free, f.err = free, err
	f.mu.Unlock()
}

// watchedDaemon is a running daemon with an agent (prepared by prepare, if not nil), whose
// events the test reads, and a host-disk watch over drv and free.
func watchedDaemon(t *testing.T, drv *pausingDriver, free *fakeFree, prepare func(d *Daemon)) (*Daemon, <-chan api.Event) {
	t.Helper()
	d := runningDaemon(1<<30, 4<<30)
	if prepare != nil {
		prepare(d)
	}
	withAgent(t, d)
	events, unsub := d.subscribe()
	t.Cleanup(unsub)
	startWatch(t, d, drv, free)
	return d, events
}

// startWatch runs the watch on d with short timings until the test ends.
func startWatch(t *testing.T, d *Daemon, drv *pausingDriver, free *fakeFree) {
	t.Helper()
	h := &hostDiskWatch{d: d, w: drv, path: "/fallback/data.img", free: free.get,
		poll: 10 * time.Millisecond, margin: 256 << 20, settle: 30 * time.Millisecond, maxWait: 80 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Error("the watch did not end with its context")
		}
	})
}

// waitEvent returns the first event that satisfies ok.
func waitEvent(t *testing.T, ch <-chan api.Event, what string, ok func(api.Event) bool) api.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event: %s", what)
		}
	}
}

func withAgent(t *testing.T, d *Daemon) {
	d.agent = fakeDiskAgent(t, make(chan proto.DiskUsage), false)
}

func TestHostDiskFullPausesAndResumes(t *testing.T) {
	drv := newPausingDriver()
	free := &fakeFree{free: 12 << 20}
	d, events := watchedDaemon(t, drv, free, nil)

	drv.errs <- fullErr
	ev := waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	for _, want := range []string{"host disk holding /home/u/.berth/default is full", "12 MiB free", "Free at least 256 MiB", "resumes the VM by itself"} {
		if !strings.Contains(ev.Error, want) {
			t.Errorf("event error %q lacks %q", ev.Error, want)
		}
	}
	if ev.Message == "" {
		t.Error("event without a message")
	}
	if st := d.Status(); st.State != api.StateDegraded || st.Error != ev.Error {
		t.Errorf("status %s %q", st.State, st.Error)
	}

	// Still full: no resume; the status follows the free space without an event.
	free.set(100<<20, nil)
	time.Sleep(100 * time.Millisecond)
	if n := drv.resumeCount(); n != 0 {
		t.Errorf("%d resumes while the host was full", n)
	}
	if st := d.Status(); !strings.Contains(st.Error, "100 MiB free") {
		t.Errorf("status error not refreshed: %q", st.Error)
	}
	select {
	case ev := <-events:
		t.Errorf("event while waiting: %+v", ev)
	default:
	}

	free.set(5<<30, nil)
	ev = waitEvent(t, events, "Running", func(ev api.Event) bool { return ev.State == api.StateRunning })
	if !strings.Contains(ev.Message, "room again") || ev.Error != "" {
		t.Errorf("resume event %+v", ev)
	}
	if st := d.Status(); st.State != api.StateRunning || st.Error != "" {
		t.Errorf("status after resume: %s %q", st.State, st.Error)
	}
	if n := drv.resumeCount(); n != 1 {
		t.Errorf("%d resumes, want 1", n)
	}
	free.mu.Lock()
	dir := free.dirs[0]
	free.mu.Unlock()
	if dir != "/home/u/.berth/default" {
		t.Errorf("free space looked up in %q", dir)
	}

	// A second pause later is handled the same way.
	free.set(0, nil)
	drv.errs <- vm.IOError{NoSpace: true, Paused: true} // no path: the data disk's
	ev = waitEvent(t, events, "Degraded again", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	if !strings.Contains(ev.Error, "/fallback is full (0 MiB free)") {
		t.Errorf("second pause: %q", ev.Error)
	}
	free.set(1<<30, nil)
	waitEvent(t, events, "Running again", func(ev api.Event) bool { return ev.State == api.StateRunning })
}

// A resume into a host that is still full pauses the VM again: berth keeps the state,
// backs off, and tries again.
func TestHostDiskPausesAgain(t *testing.T) {
	drv := newPausingDriver()
	drv.pauseAgain = true
	free := &fakeFree{free: 1 << 30}
	d, events := watchedDaemon(t, drv, free, nil)

	drv.errs <- fullErr
	waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	deadline := time.Now().Add(5 * time.Second)
	for drv.resumeCount() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := d.Status(); st.State != api.StateDegraded || !strings.Contains(st.Error, "is full") {
		t.Errorf("status while pausing again: %s %q", st.State, st.Error)
	}
	// Each new pause is not announced again.
	n := 0
	for len(events) > 0 {
		if ev := <-events; ev.State == api.StateDegraded {
			n++
		}
	}
	if n != 0 {
		t.Errorf("%d more Degraded events", n)
	}
	drv.set(func(p *pausingDriver) { p.pauseAgain = false })
	waitEvent(t, events, "Running", func(ev api.Event) bool { return ev.State == api.StateRunning })
}

// A failed resume, or a free space that cannot be read, is retried; the VM runs again.
func TestHostDiskRetries(t *testing.T) {
	drv := newPausingDriver()
	drv.resumeErr = errors.New("QMP cont: connection refused")
	free := &fakeFree{err: errors.New("statfs: input/output error")}
	_, events := watchedDaemon(t, drv, free, nil)

	drv.errs <- fullErr
	ev := waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	if !strings.Contains(ev.Error, "free space unknown") {
		t.Errorf("error %q", ev.Error)
	}
	deadline := time.Now().Add(5 * time.Second)
	for drv.resumeCount() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if drv.resumeCount() < 2 {
		t.Fatal("no retried resume")
	}
	drv.set(func(p *pausingDriver) { p.resumeErr = nil })
	waitEvent(t, events, "Running", func(ev api.Event) bool { return ev.State == api.StateRunning })
}

// When the agent session did not live through the pause, the state stays Degraded (without
// the disk error) until the engine reports on the new session.
func TestHostDiskResumeWithoutAgent(t *testing.T) {
	d := runningDaemon(1<<30, 4<<30)
	events, unsub := d.subscribe()
	defer unsub()
	drv := newPausingDriver()
	free := &fakeFree{free: 1 << 30}
	startWatch(t, d, drv, free)
	drv.errs <- fullErr
	waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded && ev.Error != "" })
	ev := waitEvent(t, events, "resumed", func(ev api.Event) bool { return strings.Contains(ev.Message, "resumed") })
	if ev.State != api.StateDegraded || ev.Error != "" || !strings.Contains(ev.Message, "reconnecting to the guest agent") {
		t.Errorf("event %+v", ev)
	}
	if st := d.Status(); st.State != api.StateDegraded || st.Error != "" {
		t.Errorf("status %s %q", st.State, st.Error)
	}
}

// During a start the error is shown without leaving Starting; errors the guest sees
// itself (no pause) change nothing.
func TestHostDiskDuringStart(t *testing.T) {
	d := runningDaemon(0, 0)
	d.status.State, d.status.Phase = api.StateStarting, api.PhaseEngine
	events, unsub := d.subscribe()
	defer unsub()
	drv := newPausingDriver()
	free := &fakeFree{free: 0}
	startWatch(t, d, drv, free)

	drv.errs <- vm.IOError{Device: "disk1", Message: "Input/output error"}
	drv.errs <- fullErr
	ev := waitEvent(t, events, "problem", func(ev api.Event) bool { return ev.Error != "" })
	if ev.State != api.StateStarting || !strings.Contains(ev.Error, "is full") {
		t.Errorf("event %+v", ev)
	}
	if st := d.Status(); st.State != api.StateStarting || st.Phase != api.PhaseEngine || st.Error == "" {
		t.Errorf("status %s %s %q", st.State, st.Phase, st.Error)
	}
	free.set(1<<30, nil)
	ev = waitEvent(t, events, "resumed", func(ev api.Event) bool { return strings.Contains(ev.Message, "resumed") })
	if ev.State != api.StateStarting {
		t.Errorf("event %+v", ev)
	}
	if st := d.Status(); st.State != api.StateStarting || st.Error != "" {
		t.Errorf("status %s %q", st.State, st.Error)
	}
}

// A stop that replaced the state while the VM was paused is left alone.
func TestHostDiskStopWhilePaused(t *testing.T) {
	drv := newPausingDriver()
	free := &fakeFree{free: 0}
	d, events := watchedDaemon(t, drv, free, nil)
	drv.errs <- fullErr
	waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	d.setState(api.StateStopping, "stopping", nil)
	free.set(1<<30, nil)
	deadline := time.Now().Add(5 * time.Second)
	for drv.resumeCount() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if st := d.Status(); st.State != api.StateStopping {
		t.Errorf("state %s after a resume during a stop", st.State)
	}
}

// Drivers that cannot report pauses get no watch.
func TestWatchHostDiskWithoutWatcher(t *testing.T) {
	d := runningDaemon(0, 0)
	done := make(chan struct{})
	go func() { defer close(done); d.watchHostDisk(context.Background(), plainDriver{}) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("watchHostDisk waits on a driver without IOErrors")
	}
}

type plainDriver struct{}

func (plainDriver) Start(context.Context) (<-chan error, error) { return nil, nil }
func (plainDriver) Stop(context.Context, bool) error            { return nil }
func (plainDriver) DialAgent(context.Context) (net.Conn, error) { return nil, errors.New("no") }

func TestHostFreeSpace(t *testing.T) {
	free, err := store.FreeSpace(t.TempDir())
	if err != nil || free == 0 {
		t.Fatalf("hostFreeSpace = %d, %v", free, err)
	}
	if _, err := store.FreeSpace("/nonexistent/berth"); err == nil {
		t.Error("no error for a missing dir")
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 MiB", 12<<20 + 5: "12 MiB", 9 << 30: "9216 MiB", 15 << 30: "15.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// A graceful stop of a VM paused on a full host disk is refused at once, saying what to
// do; a forced one is taken; once the VM runs again a graceful stop is taken too.
func TestStopWhilePausedOnFullHostDisk(t *testing.T) {
	drv := newPausingDriver()
	free := &fakeFree{free: 12 << 20}
	d, events := watchedDaemon(t, drv, free, func(d *Daemon) {
		d.inst = &store.Instance{Name: "dev", Dir: t.TempDir()}
		d.stopping, d.vmDone = make(chan struct{}), make(chan struct{})
	})
	stop := func(force bool) *httptest.ResponseRecorder {
		body, _ := json.Marshal(api.StopRequest{Force: force})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		w := httptest.NewRecorder()
		d.handleStop(w, httptest.NewRequest(http.MethodPost, "/v1/stop", bytes.NewReader(body)).WithContext(ctx))
		return w
	}

	drv.errs <- fullErr
	waitEvent(t, events, "Degraded", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	w := stop(false)
	if w.Code != http.StatusConflict {
		t.Fatalf("graceful stop while paused on a full disk: %d %s", w.Code, w.Body)
	}
	for _, want := range []string{`instance \"dev\" cannot stop cleanly now`, "is full", "once it runs again", "berth stop --force dev"} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("refusal %s lacks %q", w.Body, want)
		}
	}
	select {
	case <-d.stopping:
		t.Fatal("the refused stop was requested")
	default:
	}

	free.set(5<<30, nil)
	waitEvent(t, events, "Running", func(ev api.Event) bool { return ev.State == api.StateRunning })
	if err := d.stopBlockedByHostDisk(); err != nil {
		t.Errorf("stop still refused after the VM resumed: %v", err)
	}

	drv.errs <- fullErr
	waitEvent(t, events, "Degraded again", func(ev api.Event) bool { return ev.State == api.StateDegraded })
	close(d.vmDone) // the forced stop's VM is gone at once
	if w := stop(true); w.Code != http.StatusOK {
		t.Errorf("forced stop while paused: %d %s", w.Code, w.Body)
	}
	select {
	case <-d.stopping:
		if !d.stopForce {
			t.Error("the stop was not forced")
		}
	default:
		t.Error("the forced stop was not requested")
	}
}
