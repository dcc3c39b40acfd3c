//go:build linux

package daemon

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// pausableVM is fakeVM with vm.Pauser: while paused, the agent's side of the channel reads
// nothing, as a guest whose vCPUs stand still. clientWhilePaused counts reads that carried
// a docker stream's header or a client's bytes while paused (it must stay 0: they go only
// to a resumed VM; yamux's own frames, a ping's cancel, may come at any time).
type pausableVM struct {
	*fakeVM
	mu                sync.Mutex
	cond              *sync.Cond
	paused            bool
	pauses, resumes   int
	clientWhilePaused int
}

var _ vm.Pauser = (*pausableVM)(nil)

func newPausableVM(t *testing.T, sock string) *pausableVM {
	p := &pausableVM{fakeVM: newFakeVM(t, sock)}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pausableVM) Pause(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	p.pauses++
	return nil
}

func (p *pausableVM) Resume(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.resumes++
	}
	p.paused = false
	p.cond.Broadcast()
	return nil
}

func (p *pausableVM) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

func (p *pausableVM) DialAgent(ctx context.Context) (net.Conn, error) {
	host, guest := unixPair(p.t)
	g := &frozenConn{Conn: guest, vm: p}
	go p.srv.ServeConn(context.Background(), g)
	return host, nil
}

// frozenConn is the guest's end of the channel: a read waits while the VM is paused.
type frozenConn struct {
	net.Conn
	vm *pausableVM
}

func (c *frozenConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.vm.mu.Lock()
	if c.vm.paused && (bytes.Contains(b[:n], []byte(`"type":"docker"`)) || bytes.Contains(b[:n], []byte("GET /_ping"))) {
		c.vm.clientWhilePaused++
	}
	for c.vm.paused {
		c.vm.cond.Wait()
	}
	c.vm.mu.Unlock()
	return n, err
}

// startPausable runs the agent supervisor over p, as boot does, up to Running.
func startPausable(t *testing.T, d *Daemon, p *pausableVM) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	agent, err := dialAgent(ctx, p, d.log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.greet(ctx, agent); err != nil {
		t.Fatal(err)
	}
	d.setAgent(agent)
	d.driver = p
	d.ports = newPortManager(ctx, d.liveAgent, false, d.log, func(string, error) {})
	d.ports.hold = d.clientHold
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.superviseAgent(ctx, p, agent, nil)
	}()
	close(d.running)
	t.Cleanup(func() {
		cancel()
		p.Resume(context.Background()) // let the agent's goroutines end
		waitGroup(t, &d.wg, 10*time.Second)
	})
	return ctx
}

func waitState(t *testing.T, d *Daemon, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if d.Status().State == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := d.Status()
	t.Fatalf("state %s after %s, want %s (idle %+v)", st.State, within, want, st.Idle)
}

// TestIdlePauseAndResume: an idle instance pauses after pauseAfter; the agent session
// survives a pause far longer than the ping timeout; a docker client on the paused VM gets
// its answer with no error, and its bytes reach the guest only after the resume; the
// control API's pause and resume work and status calls do not wake the VM.
func TestIdlePauseAndResume(t *testing.T) {
	oldEvery, oldTimeout := pingEvery, pingTimeout
	pingEvery, pingTimeout = 20*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { pingEvery, pingTimeout = oldEvery, oldTimeout })

	sock, _ := fakeEngine(t, false)
	p := newPausableVM(t, sock)
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	d.cfg.Idle.PauseAfter = store.Duration(300 * time.Millisecond)
	ctx := startPausable(t, d, p)

	waitState(t, d, api.StatePaused, 5*time.Second)
	if !p.isPaused() {
		t.Fatal("state is Paused but the driver was not paused")
	}
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	// Many ping timeouts pass while paused: the session must stay.
	time.Sleep(10 * pingTimeout)
	if agent.closed() {
		t.Fatal("the agent session was given up while the VM was paused")
	}
	if st := d.Status(); st.State != api.StatePaused || st.Idle == nil || st.Idle.PausedAt.IsZero() {
		t.Fatalf("status while paused: %s, %+v", st.State, st.Idle)
	}

	// A docker client resumes the VM and is answered.
	client, server := unixPair(t)
	go d.forwardDocker(ctx)(server)
	client.Write([]byte("GET /_ping"))
	client.(*net.UnixConn).CloseWrite()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "GET /_PING" {
		t.Fatalf("docker client on a paused VM: got %q, %v", got, err)
	}
	p.mu.Lock()
	early, resumes := p.clientWhilePaused, p.resumes
	p.mu.Unlock()
	if early != 0 {
		t.Fatalf("%d reads of the client's stream reached the guest while it was paused", early)
	}
	if resumes != 1 {
		t.Fatalf("resumes = %d, want 1", resumes)
	}
	if st := d.Status(); st.State != api.StateRunning || st.Idle.Resumes != 1 {
		t.Fatalf("after the client: %s, %+v", st.State, st.Idle)
	}
	if agent.closed() {
		t.Fatal("the agent session did not survive the pause")
	}
	// ... and it pauses again once idle.
	waitState(t, d, api.StatePaused, 5*time.Second)

	// The control API: status does not wake it, resume and pause do what they say.
	h := d.apiServer().Handler
	call := func(method, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code
	}
	if code := call(http.MethodGet, "/v1/status"); code != 200 || !p.isPaused() {
		t.Fatalf("GET /v1/status: %d, paused %v (must not wake the VM)", code, p.isPaused())
	}
	if code := call(http.MethodPost, "/v1/resume"); code != 200 || p.isPaused() || d.Status().State != api.StateRunning {
		t.Fatalf("POST /v1/resume: %d, paused %v, state %s", code, p.isPaused(), d.Status().State)
	}
	if code := call(http.MethodPost, "/v1/pause"); code != 200 || !p.isPaused() || d.Status().State != api.StatePaused {
		t.Fatalf("POST /v1/pause: %d, paused %v, state %s", code, p.isPaused(), d.Status().State)
	}
	if code := call(http.MethodPost, "/v1/pause"); code != 200 {
		t.Fatalf("POST /v1/pause on a paused VM: %d", code)
	}
	// Any other control-API call is a client: logs of the agent wake the VM.
	if code := call(http.MethodGet, "/v1/logs?name=nosuchlog"); p.isPaused() {
		t.Fatalf("GET /v1/logs (%d) did not wake the VM", code)
	}
}

// TestIdleStreamKeepsAwake: an open client stream (a forwarded connection, a shell)
// keeps the VM from pausing; its end starts the delay.
func TestIdleStreamKeepsAwake(t *testing.T) {
	p := newPausableVM(t, "/nonexistent")
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	d.cfg.Idle.PauseAfter = store.Duration(200 * time.Millisecond)
	release := d.clientHold(t.Context())
	startPausable(t, d, p)
	time.Sleep(600 * time.Millisecond)
	if p.isPaused() || d.Status().State != api.StateRunning {
		t.Fatal("paused with a client stream open")
	}
	release()
	waitState(t, d, api.StatePaused, 5*time.Second)
}

// guestClock is a guest clock off the host's by off; TypeClockAdjust moves it.
type guestClock struct {
	mu      sync.Mutex
	off     time.Duration
	adjusts int
}

func (c *guestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *guestClock) Adjust(d time.Duration) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
	c.adjusts++
	return proto.ClockAction(int64(d)), nil
}

func (c *guestClock) offset() (time.Duration, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off, c.adjusts
}

// TestClockCheck: a check corrects the guest clock by what it measured, and a VM that
// stands still while a check is on its way (SIGSTOP, an overloaded host) neither moves a
// right clock nor leaves a wrong one off by the time it stood still: a reading whose round
// trip is too long to trust is read again, and the correction is relative.
func TestClockCheck(t *testing.T) {
	for _, tc := range []struct {
		name  string
		off   time.Duration // the guest clock's offset before the check
		stall time.Duration // how long the VM stands still with the first read on its way
	}{
		{"right", 0, 0},
		{"behind", -3 * time.Second, 0},
		{"ahead", 40 * time.Millisecond, 0},
		{"right, stalled", 0, 2 * clockTrustRTT},
		{"behind, stalled", -90 * time.Second, 2 * clockTrustRTT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &guestClock{}
			p := newPausableVM(t, "/nonexistent")
			p.srv = guestagent.NewServer(guestagent.ServeOptions{DockerSocket: "/nonexistent", Clock: clk}, nil, slog.New(slog.DiscardHandler))
			d := testDaemon()
			d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
			ctx := startPausable(t, d, p)
			clk.mu.Lock()
			clk.off = tc.off
			clk.mu.Unlock()
			if tc.stall > 0 {
				p.Pause(ctx) // behind hostd's back, as SIGSTOP
				time.AfterFunc(tc.stall, func() { p.Resume(context.Background()) })
			}
			d.syncClock(ctx, clockStall, 5*time.Second)
			c := d.Status().Clock
			off, adjusts := clk.offset()
			t.Logf("check: %+v; guest clock now %s off after %d adjustments", c, off, adjusts)
			if c == nil || c.Error != "" || c.Reason != clockStall {
				t.Fatalf("status clock: %+v", c)
			}
			// The fake channel's round trip is well under a millisecond once running.
			if !within(off, 5*time.Millisecond) {
				t.Fatalf("guest clock %s off after the check, want within 5 ms", off)
			}
			if tc.off == 0 && adjusts != 0 && c.Action != proto.ClockNone {
				t.Fatalf("a right clock was moved: %+v", c)
			}
			if tc.stall > 0 && c.Reads < 2 {
				t.Fatalf("a read that waited %s was trusted: %+v", tc.stall, c)
			}
		})
	}
}

func within(d, bound time.Duration) bool { return d < bound && d > -bound }

// TestClockSessionCheck: a new agent session starts with a clock check (greet), before
// any stream is opened on it.
func TestClockSessionCheck(t *testing.T) {
	clk := &guestClock{off: -45 * time.Second}
	p := newPausableVM(t, "/nonexistent")
	p.srv = guestagent.NewServer(guestagent.ServeOptions{DockerSocket: "/nonexistent", Clock: clk}, nil, slog.New(slog.DiscardHandler))
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	startPausable(t, d, p)
	c := d.Status().Clock
	if off, _ := clk.offset(); !within(off, 5*time.Millisecond) || c == nil || c.Reason != clockSession || c.Action != proto.ClockStep {
		t.Fatalf("after the session started: guest clock %s off, check %+v", off, c)
	}
}

// TestIdleConfirmsWithEngine: right before an idle pause hostd asks the engine itself; a
// container the activity stream has not reported yet (its start event unread in the guest,
// as when the VM stood still right after `docker run -d`) keeps the VM awake.
func TestIdleConfirmsWithEngine(t *testing.T) {
	dir := t.TempDir()
	eng := startFakeEngineAPI(t, dir)
	log := slog.New(slog.DiscardHandler)
	watcher := &guestagent.PortWatcher{DockerSocket: eng.sock, Listeners: guestagent.ListenersNone, Log: log}
	wctx, wcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); watcher.Run(wctx) }()
	t.Cleanup(func() { wcancel(); waitGroup(t, &wg, 10*time.Second) })

	p := newPausableVM(t, eng.sock)
	p.srv = guestagent.NewServer(guestagent.ServeOptions{DockerSocket: eng.sock, Ports: watcher}, nil, log)
	d := testDaemon()
	d.inst = &store.Instance{Name: "t", Dir: t.TempDir()}
	d.cfg.Idle.PauseAfter = store.Duration(time.Second)
	startPausable(t, d, p)
	for deadline := time.Now().Add(5 * time.Second); d.Status().Idle == nil || d.Status().Idle.Containers != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the activity stream never said 0 containers: %+v", d.Status().Idle)
		}
	}
	// The engine now runs a container the watcher has not heard of: no event is sent.
	eng.ports.Store([]publishedPort{{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"}})
	time.Sleep(2500 * time.Millisecond)
	if p.isPaused() || d.Status().State != api.StateRunning {
		t.Fatalf("paused while the engine runs a container: %+v", d.Status().Idle)
	}
	if n := d.Status().Idle.Containers; n != 1 {
		t.Fatalf("containers = %d after the check, want 1", n)
	}
	// Once it is gone (and the engine says so), the VM pauses.
	eng.ports.Store([]publishedPort{})
	eng.events <- struct{}{}
	waitState(t, d, api.StatePaused, 5*time.Second)
}
