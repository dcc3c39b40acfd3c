package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// Idle pause (idle.pauseAfter, docs/resources.md). hostd counts what keeps the VM awake:
// running containers (the agent's activity stream), client streams (forwarded port
// connections, `berth shell`/exec, control-API actions) and docker socket connections
// that wait for an answer. When none of them was seen for pauseAfter, the VM's vCPUs are
// stopped (vm.Pauser). Every client path wakes the VM before it forwards anything, so a
// client never sees the pause; a docker connection that only sits open (an idle
// keep-alive connection, `docker events`, the tray's watch) does not keep it awake.

// Tracker states.
const (
	vmAwake   = iota
	vmPausing // a pause is in progress: a client that comes now resumes after it
	vmPaused
)

// idleTracker is the bookkeeping, with a clock that tests replace.
type idleTracker struct {
	now        func() time.Time
	pauseAfter time.Duration // 0: never pause on its own

	mu         sync.Mutex
	containers int // running containers the agent reported; -1 unknown
	holds      int // client streams open now
	awaiting   int // docker connections whose client spoke last: an answer is due
	last       time.Time
	state      int
	epoch      uint64 // counts pauses: a wait that spans one is not the agent's fault
	pausedAt   time.Time
	pauses     int
	resumes    int
	lastResume time.Duration
}

func newIdleTracker(pauseAfter time.Duration, now func() time.Time) *idleTracker {
	return &idleTracker{now: now, pauseAfter: pauseAfter, containers: -1, last: now()}
}

// setContainers records the agent's running-container count.
func (t *idleTracker) setContainers(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n != t.containers {
		t.containers = n
		t.last = t.now()
	}
}

// touch counts as activity now: the idle delay starts again.
func (t *idleTracker) touch() {
	t.mu.Lock()
	t.last = t.now()
	t.mu.Unlock()
}

// hold counts a client stream until release is called; it reports whether the VM must be
// woken for it (it is paused or pausing).
func (t *idleTracker) hold() (release func(), wake bool) {
	t.mu.Lock()
	t.holds++
	t.last = t.now()
	wake = t.state != vmAwake
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			t.holds--
			t.last = t.now()
			t.mu.Unlock()
		})
	}, wake
}

// io records traffic on a docker connection: fromClient is its direction; *awaiting is
// that connection's flag, guarded by t.mu. It reports whether the VM must be woken.
func (t *idleTracker) io(awaiting *bool, fromClient bool) (wake bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last = t.now()
	if *awaiting != fromClient {
		*awaiting = fromClient
		if fromClient {
			t.awaiting++
		} else {
			t.awaiting--
		}
	}
	return fromClient && t.state != vmAwake
}

// quiet reports whether nothing has kept the VM awake for d: no container, no client.
func (t *idleTracker) quiet(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.busyLocked() == "" && t.now().Sub(t.last) >= d
}

// busy reports what keeps the VM awake, "" when nothing does.
func (t *idleTracker) busyLocked() string {
	switch {
	case t.containers < 0:
		return "the running containers are not known yet"
	case t.containers > 0:
		return fmt.Sprintf("%d containers running", t.containers)
	case t.holds > 0:
		return fmt.Sprintf("%d client streams open", t.holds)
	case t.awaiting > 0:
		return fmt.Sprintf("%d docker requests in progress", t.awaiting)
	}
	return ""
}

// due reports whether the VM should pause now, and otherwise how long until it may.
func (t *idleTracker) due() (bool, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pauseAfter <= 0 || t.state != vmAwake {
		return false, time.Hour
	}
	if t.busyLocked() != "" {
		return false, t.pauseAfter
	}
	idle := t.now().Sub(t.last)
	if idle >= t.pauseAfter {
		return true, 0
	}
	return false, t.pauseAfter - idle
}

// beginPause moves to vmPausing when the VM is awake and (unless forced) still due.
func (t *idleTracker) beginPause(force bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state != vmAwake {
		return errAlreadyPaused
	}
	if !force {
		if b := t.busyLocked(); b != "" {
			return errors.New(b)
		}
		if t.now().Sub(t.last) < t.pauseAfter {
			return errors.New("activity since the pause was scheduled")
		}
	}
	t.state = vmPausing
	t.epoch++
	return nil
}

var errAlreadyPaused = errors.New("already paused")

// endPause records the outcome of a pause begun with beginPause.
func (t *idleTracker) endPause(ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		t.state = vmPaused
		t.pausedAt = t.now()
		t.pauses++
	} else {
		t.state = vmAwake
	}
}

// paused reports whether the VM is paused (or pausing), and the pause epoch.
func (t *idleTracker) paused() (bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.state != vmAwake, t.epoch
}

// resumed records a resume that took took; the resume counts as activity.
func (t *idleTracker) resumed(took time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.state = vmAwake
	t.last = t.now()
	t.resumes++
	t.lastResume = took
}

func (t *idleTracker) snapshot(supported bool) *api.Idle {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &api.Idle{PauseAfter: t.pauseAfter, Supported: supported, Containers: t.containers,
		Clients: t.holds + t.awaiting, LastActivity: t.last, Pauses: t.pauses, Resumes: t.resumes,
		LastResume: t.lastResume}
	if t.state == vmPaused {
		s.PausedAt = t.pausedAt
	}
	return s
}

// idler drives the tracker for one Daemon: it pauses and resumes the VM.
type idler struct {
	t       *idleTracker
	op      sync.Mutex    // one pause or resume at a time
	resumed chan struct{} // a resume happened: the idle loop starts counting again

	// Set by run; nil until then (and without a driver that can pause).
	mu        sync.Mutex
	pauser    vm.Pauser
	prevState string // the state a resume returns to
}

// idle returns the daemon's idler, made on first use.
func (d *Daemon) idle() *idler {
	d.idleOnce.Do(func() {
		d.idleCtl = &idler{t: newIdleTracker(time.Duration(d.cfg.Idle.PauseAfter), time.Now), resumed: make(chan struct{}, 1)}
	})
	return d.idleCtl
}

func (i *idler) getPauser() vm.Pauser {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.pauser
}

// idleLoop pauses the VM once it was idle for pauseAfter. It runs per agent session (a
// follower in runSession) from Running on, and owns no pause: a resume is always a
// client's or a request's.
func (d *Daemon) idleLoop(ctx context.Context, agent *agentClient) error {
	select {
	case <-d.running:
	case <-ctx.Done():
		return nil
	}
	d.mu.Lock()
	drv := d.driver
	d.mu.Unlock()
	i := d.idle()
	p, ok := drv.(vm.Pauser)
	if !ok {
		d.log.Info("this VM driver cannot pause: idle.pauseAfter has no effect")
		return nil
	}
	i.mu.Lock()
	i.pauser = p
	i.mu.Unlock()
	for {
		due, wait := i.t.due()
		if due {
			if err := d.pauseVM(ctx, false); err != nil && !errors.Is(err, errAlreadyPaused) {
				d.log.Debug("idle pause skipped", "reason", err)
			}
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-i.resumed:
			t.Stop()
		case <-t.C:
		}
	}
}

// pauseVM stops the VM's vCPUs: on its own only when the tracker still finds it idle and
// the instance is Running; with force (berth pause) from Running or Degraded.
func (d *Daemon) pauseVM(ctx context.Context, force bool) error {
	i := d.idle()
	p := i.getPauser()
	if p == nil {
		return fmt.Errorf("instance %q cannot pause: it is not running, or its VM driver has no pause (docs/resources.md)", d.inst.Name)
	}
	i.op.Lock()
	defer i.op.Unlock()
	d.mu.Lock()
	state := d.status.State
	d.mu.Unlock()
	if state == api.StatePaused {
		return errAlreadyPaused
	}
	if state != api.StateRunning && !(force && state == api.StateDegraded) {
		return fmt.Errorf("instance %q is %s, not Running: only a running instance pauses", d.inst.Name, state)
	}
	if !force {
		if err := d.confirmIdle(ctx); err != nil {
			return err
		}
	}
	if err := i.t.beginPause(force); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := p.Pause(pctx)
	cancel()
	if err != nil {
		// The stop may still be carried out late (a VM process that was itself stopped
		// answers nothing): a cont queued behind it leaves the VM running either way.
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if rerr := p.Resume(rctx); rerr != nil {
			d.log.Warn("resume after a failed pause failed too", "err", rerr)
		}
		cancel()
	}
	i.t.endPause(err == nil)
	if err != nil {
		d.log.Warn("failed to pause the VM", "err", err)
		return fmt.Errorf("failed to pause the VM: %w", err)
	}
	i.mu.Lock()
	i.prevState = state
	i.mu.Unlock()
	msg := "paused by request"
	if !force {
		msg = fmt.Sprintf("paused: idle for %s (idle.pauseAfter); the next client resumes it", i.t.pauseAfter)
	}
	d.log.Info("VM paused", "forced", force)
	d.setState(api.StatePaused, msg, nil)
	d.inst.WriteState(store.State{State: api.StatePaused, PID: os.Getpid(), StartedAt: d.startedAt})
	return nil
}

// confirmIdle asks the engine itself whether containers run, right before an idle pause:
// the activity stream may not have told yet (a container started just before the VM stood
// still, its event still unread in the guest). A count above zero, or no answer within
// confirmIdleTimeout (a VM that is not answering is not idle), counts as activity: the
// idle delay starts again. An agent without TypeActivityCheck is trusted as before.
func (d *Daemon) confirmIdle(ctx context.Context) error {
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	if agent == nil || agent.closed() {
		return errors.New("no agent session")
	}
	cctx, cancel := context.WithTimeout(ctx, confirmIdleTimeout)
	resp, err := agent.call(cctx, proto.Request{Type: proto.TypeActivityCheck})
	cancel()
	t := d.idle().t
	switch {
	case proto.IsUnknownType(err):
		return nil
	case err != nil:
		t.touch()
		return fmt.Errorf("the guest did not confirm it is idle: %w", err)
	case resp.Activity == nil:
		return nil
	case resp.Activity.Containers != 0:
		t.setContainers(resp.Activity.Containers)
		t.touch()
		return fmt.Errorf("the engine runs %d containers", resp.Activity.Containers)
	}
	return nil
}

// confirmIdleTimeout bounds confirmIdle's question.
var confirmIdleTimeout = 5 * time.Second

// resumeVM continues a paused VM and sets its clock; reason is logged. It is cheap when the
// VM runs.
func (d *Daemon) resumeVM(ctx context.Context, reason string) error {
	i := d.idle()
	i.op.Lock()
	defer i.op.Unlock()
	if paused, _ := i.t.paused(); !paused {
		return nil
	}
	p := i.getPauser()
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := p.Resume(rctx)
	cancel()
	if err != nil {
		d.log.Error("failed to resume the VM", "err", err, "for", reason)
		return fmt.Errorf("failed to resume the VM: %w (see %s)", err, d.inst.Path(store.HostdLog))
	}
	took := time.Since(start)
	i.t.resumed(took)
	select {
	case i.resumed <- struct{}{}:
	default:
	}
	i.mu.Lock()
	prev := i.prevState
	i.mu.Unlock()
	if prev == "" {
		prev = api.StateRunning
	}
	d.log.Info("VM resumed", "for", reason, "took", took.Round(time.Microsecond))
	d.setState(prev, "resumed ("+reason+")", nil)
	d.inst.WriteState(store.State{State: prev, PID: os.Getpid(), StartedAt: d.startedAt})
	// The guest's clock stood still while paused: set it before the client's first byte.
	d.syncClock(ctx, clockResume, resumeClockTimeout)
	return nil
}

// resumeClockTimeout bounds the clock correction a resume waits for; the periodic check
// repairs what it misses.
const resumeClockTimeout = time.Second

// clientHold counts a client stream (forwarded port connection, exec, control-API action)
// until the returned release is called, and resumes a paused VM first.
func (d *Daemon) clientHold(ctx context.Context) func() {
	release, wake := d.idle().t.hold()
	if wake {
		if err := d.resumeVM(ctx, "client"); err != nil {
			d.log.Warn("client arrived while the VM could not be resumed", "err", err)
		}
	}
	return release
}

// idleStream wraps the guest side of a docker connection's Pipe: bytes from the client
// resume a paused VM before they are written to the guest, and the connection counts as
// busy from a client's request until the guest answers.
func (d *Daemon) idleStream(s proto.HalfCloser) proto.HalfCloser {
	return &idleConn{HalfCloser: s, d: d}
}

type idleConn struct {
	proto.HalfCloser
	d        *Daemon
	awaiting bool // guarded by the tracker's mutex
	closed   bool // guarded by the tracker's mutex
}

// Write carries client bytes to the guest.
func (c *idleConn) Write(p []byte) (int, error) {
	if c.d.idle().t.io(&c.awaiting, true) {
		if err := c.d.resumeVM(context.Background(), "docker client"); err != nil {
			c.d.log.Warn("docker client arrived while the VM could not be resumed", "err", err)
		}
	}
	return c.HalfCloser.Write(p)
}

// Read carries the guest's answer to the client.
func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.HalfCloser.Read(p)
	if n > 0 {
		c.d.idle().t.io(&c.awaiting, false)
	}
	return n, err
}

// Close ends the connection's part in the count.
func (c *idleConn) Close() error {
	t := c.d.idle().t
	t.mu.Lock()
	if !c.closed {
		c.closed = true
		if c.awaiting {
			c.awaiting = false
			t.awaiting--
		}
		t.last = t.now()
	}
	t.mu.Unlock()
	return c.HalfCloser.Close()
}

// Abort passes a Pipe's teardown on to the stream (proto.HalfStream's Abort).
func (c *idleConn) Abort() {
	if a, ok := c.HalfCloser.(interface{ Abort() }); ok {
		a.Abort()
	} else {
		c.HalfCloser.Close()
	}
	c.Close()
}

// followActivity applies the agent's running-container counts until the stream ends.
func (d *Daemon) followActivity(ctx context.Context, agent *agentClient) error {
	err := followUpdates(ctx, agent, proto.TypeActivity, d.log, func(a proto.Activity) {
		d.idle().t.setContainers(a.Containers)
	})
	if err != nil && ctx.Err() == nil {
		d.log.Info("the agent reports no activity (older agent?): the VM is not paused on its own", "err", err)
	}
	return nil
}

// keepalive is the session's heartbeat: one timer, ticking every min(clockTick,
// pingEvery), serves every periodic check, so an idle hostd wakes for nothing else.
//   - Every tick compares the host's wall clock with its monotonic clock: a jump means the
//     host slept, and the guest clock is checked (clockLoop).
//   - Every pingEvery it pings the agent (agentClient.ping; every pingInfoEvery-th asks for
//     its info), every pingQuietEvery once no container and no client has kept the VM
//     awake for as long (idleTracker.quiet). It knows about pauses: no ping while the VM
//     is paused, and a ping whose wait spanned a pause is not held against the agent. A
//     slow answer means the VM stood still: clock check.
//   - Once clockEvery passed since the last clock check, it asks for the periodic one.
//
// The ping waits in this loop: while it does, the other checks wait too (the agent is not
// answering anyway) and catch up on the next tick; a host sleep still shows then, as the
// wall clock's jump against the monotonic one is measured from the tick before the ping.
func (d *Daemon) keepalive(ctx context.Context, a *agentClient) {
	i := d.idle()
	c := d.clock()
	tick := min(clockTick, pingEvery)
	pingTicks := max(1, int((pingEvery+tick/2)/tick))               // ticks between pings
	quietTicks := max(pingTicks, int((pingQuietEvery+tick/2)/tick)) // the same while quiet
	t := time.NewTicker(tick)
	defer t.Stop()
	prev := time.Now()
	pings, sincePing := 0, 0
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case <-a.done():
			return
		case now = <-t.C:
		}
		sincePing++
		slept := hostSlept(now.Sub(prev), now.Round(0).Sub(prev.Round(0)), clockJump)
		prev = now
		if paused, _ := i.t.paused(); paused {
			continue // the resume pings nothing and sets the clock
		}
		switch {
		case slept:
			d.clockKick(clockHostSleep)
		case c.clockDue(now):
			d.clockKick(clockPeriodic)
		}
		want := pingTicks
		if i.t.quiet(pingQuietEvery) {
			want = quietTicks
		}
		if sincePing < want {
			continue
		}
		sincePing = 0
		_, epoch := i.t.paused()
		start := time.Now()
		err := a.ping(ctx, pings%pingInfoEvery == 0)
		pings++
		paused, now2 := i.t.paused()
		if paused || now2 != epoch {
			continue
		}
		if err != nil && ctx.Err() == nil && !a.closed() {
			a.log.Warn("the agent did not answer; reconnecting", "err", err, "timeout", pingTimeout)
			a.close()
			return
		}
		// An answer that took seconds means the VM did not run meanwhile (its process was
		// stopped, or the host was overloaded): its clock fell behind.
		if took := time.Since(start); took > stallThreshold {
			d.clockKick(clockStall)
		}
	}
}

// stallThreshold: a ping slower than this marks a VM that stood still.
const stallThreshold = 2 * time.Second

// handlePause serves POST /v1/pause.
func (d *Daemon) handlePause(w http.ResponseWriter, r *http.Request) {
	err := d.pauseVM(r.Context(), true)
	if err != nil && !errors.Is(err, errAlreadyPaused) {
		writeError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusOK, d.Status())
}

// handleResume serves POST /v1/resume.
func (d *Daemon) handleResume(w http.ResponseWriter, r *http.Request) {
	if err := d.resumeVM(r.Context(), "request"); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, d.Status())
}

// passiveAPI lists control-API calls that read or steer the instance without using it:
// they neither wake a paused VM nor keep it awake (the tray polls them).
var passiveAPI = map[string]bool{
	"GET /v1/status": true, "GET /v1/events": true, "GET /v1/ports": true, "GET /v1/mounts": true,
	"POST /v1/stop": true, "POST /v1/pause": true, "POST /v1/resume": true,
}

// idleAPI wraps the control API: every other call (exec, logs, ...) is a client.
func (d *Daemon) idleAPI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !passiveAPI[r.Method+" "+r.URL.Path] {
			defer d.clientHold(r.Context())()
		}
		h.ServeHTTP(w, r)
	})
}

// idleStatus is Status.Idle.
func (d *Daemon) idleStatus() *api.Idle {
	i := d.idle()
	return i.t.snapshot(i.getPauser() != nil)
}
