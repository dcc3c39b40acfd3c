//go:build linux

package daemon

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/prototest"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// fakeVM is a vm.Driver whose agent channel is the real guestagent.Server on a socket pair,
// with a fake engine socket: hostd's side of every stream runs for real, without a VM.
type fakeVM struct {
	t      *testing.T
	srv    *guestagent.Server
	mu     sync.Mutex
	guests []net.Conn // the agent's end of each channel dialled
}

func newFakeVM(t *testing.T, dockerSock string) *fakeVM {
	srv := guestagent.NewServer(guestagent.ServeOptions{DockerSocket: dockerSock}, nil, slog.New(slog.DiscardHandler))
	return &fakeVM{t: t, srv: srv}
}

func (f *fakeVM) Start(ctx context.Context) (<-chan error, error) { return make(chan error), nil }
func (f *fakeVM) Stop(ctx context.Context, force bool) error      { return nil }

func (f *fakeVM) DialAgent(ctx context.Context) (net.Conn, error) {
	host, guest := unixPair(f.t)
	f.mu.Lock()
	f.guests = append(f.guests, guest)
	f.mu.Unlock()
	go f.srv.ServeConn(context.Background(), guest)
	return host, nil
}

// killAgent ends the agent's side of the current channel, as a restart of its serve
// process does.
func (f *fakeVM) killAgent() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.guests[len(f.guests)-1].Close()
}

func testDaemon() *Daemon {
	return &Daemon{
		inst:     &store.Instance{Name: "t"},
		log:      slog.New(slog.DiscardHandler),
		stopping: make(chan struct{}),
		vmDone:   make(chan struct{}),
		shares:   &shares{},
		agentSet: make(chan struct{}),
		running:  make(chan struct{}),
		status:   api.Status{State: api.StateRunning},
	}
}

// startSessions connects to vm and runs the agent supervisor as boot does.
func startSessions(t *testing.T, d *Daemon, vm *fakeVM) (context.Context, *agentClient) {
	ctx, cancel := context.WithCancel(t.Context())
	agent, err := dialAgent(ctx, vm, d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.setAgent(agent)
	d.ports = newPortManager(ctx, d.liveAgent, false, d.log, func(string, error) {})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.superviseAgent(ctx, vm, agent, nil)
	}()
	t.Cleanup(func() {
		cancel()
		waitGroup(t, &d.wg, 10*time.Second)
	})
	return ctx, agent
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("goroutines of the run still running %s after it ended", d)
	}
}

// TestAgentReconnect: when the agent's side of the session goes away, hostd reconnects on
// its own, new streams go to the new session, and the run's goroutines all end with it.
func TestAgentReconnect(t *testing.T) {
	vm := newFakeVM(t, "/nonexistent")
	d := testDaemon()
	ctx, first := startSessions(t, d, vm)

	vm.killAgent()
	deadline := time.Now().Add(10 * time.Second)
	var agent *agentClient
	for time.Now().Before(deadline) {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		a, err := d.liveAgent(actx)
		cancel()
		if err == nil && a != first {
			agent = a
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if agent == nil {
		t.Fatal("hostd did not reconnect to the agent")
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := agent.info(ictx); err != nil {
		t.Fatalf("new session does not answer: %v", err)
	}
}

// fakeEngine serves a unix socket: "echo" connections answer what they read, upper-cased,
// after the client half-closes; "chatty" ones write until closed and report that.
func fakeEngine(t *testing.T, chatty bool) (string, chan struct{}) {
	sock := t.TempDir() + "/docker.sock"
	return sock, fakeEngineAt(t, sock, chatty)
}

// fakeEngineAt is fakeEngine on the socket path sock.
func fakeEngineAt(t *testing.T, sock string, chatty bool) chan struct{} {
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	closed := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if !chatty {
					in, _ := io.ReadAll(c)
					c.Write(bytes.ToUpper(in))
					return
				}
				line := bytes.Repeat([]byte("log line\n"), 1024)
				for {
					if _, err := c.Write(line); err != nil {
						closed <- struct{}{}
						return
					}
				}
			}()
		}
	}()
	return closed
}

// halfClosedRequest sends req, half-closes, runs meanwhile (if not nil) and returns the
// whole answer.
func halfClosedRequest(t *testing.T, client net.Conn, req string, meanwhile func()) string {
	t.Helper()
	client.Write([]byte(req))
	client.(*net.UnixConn).CloseWrite()
	if meanwhile != nil {
		meanwhile()
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", req, err)
	}
	return string(got)
}

// TestDockerForwardHalfClose: a request, a half-close, and the whole reply comes back.
func TestDockerForwardHalfClose(t *testing.T) {
	sock, _ := fakeEngine(t, false)
	vm := newFakeVM(t, sock)
	d := testDaemon()
	ctx, _ := startSessions(t, d, vm)
	client, server := unixPair(t)
	go d.forwardDocker(ctx)(server)
	if got := halfClosedRequest(t, client, "GET /_ping", nil); got != "GET /_PING" {
		t.Fatalf("got %q", got)
	}
}

// TestDockerClientGoneMidStream: a client killed during a chatty stream (`logs -f`,
// `exec` on a container that keeps printing) closes the engine connection in the guest,
// and no stream stays open on either side.
func TestDockerClientGoneMidStream(t *testing.T) {
	sock, engineClosed := fakeEngine(t, true)
	vm := newFakeVM(t, sock)
	d := testDaemon()
	ctx, agent := startSessions(t, d, vm)
	// The session's own followers (engine events) open their streams first.
	time.Sleep(300 * time.Millisecond)
	base := agent.sess.NumStreams()
	for range 5 {
		client, server := unixPair(t)
		done := make(chan struct{})
		go func() { d.forwardDocker(ctx)(server); close(done) }()
		io.ReadFull(client, make([]byte, 32<<10))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the forward did not end after its client left")
		}
		select {
		case <-engineClosed:
		case <-time.After(10 * time.Second):
			t.Fatal("the engine connection in the guest stayed open")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for agent.sess.NumStreams() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := agent.sess.NumStreams(); n > base {
		t.Errorf("%d streams left open on the host (base %d)", n, base)
	}
}

// TestDockerClientGoneWhileWaiting: a client that hangs up while its stream waits (here
// for an agent that is not there: a restart, a busy guest) ends the wait at once instead
// of after its 30 s; one that only half-closed keeps waiting for its answer.
func TestDockerClientGoneWhileWaiting(t *testing.T) {
	d := testDaemon()
	client, server := unixPair(t)
	done := make(chan struct{})
	go func() { d.forwardDocker(t.Context())(server); close(done) }()
	client.Write([]byte("GET /_ping HTTP/1.0\r\n\r\n"))
	client.(*net.UnixConn).CloseWrite()
	select {
	case <-done:
		t.Fatal("the forward gave up on a half-closed client")
	case <-time.After(500 * time.Millisecond):
	}
	client.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the forward still waits 5 s after its client hung up")
	}
}

// TestDockerWaitsForRestartingEngine: a client that connects while dockerd restarts (its
// socket is gone) is answered once the engine is back, not refused.
func TestDockerWaitsForRestartingEngine(t *testing.T) {
	sock := t.TempDir() + "/docker.sock"
	vm := newFakeVM(t, sock)
	d := testDaemon()
	ctx, _ := startSessions(t, d, vm)
	client, server := unixPair(t)
	go d.forwardDocker(ctx)(server)
	comesBack := func() {
		time.Sleep(700 * time.Millisecond)
		fakeEngineAt(t, sock, false)
	}
	if got := halfClosedRequest(t, client, "GET /_ping", comesBack); got != "GET /_PING" {
		t.Fatalf("got %q", got)
	}
}

// TestDockerRefusedWithReason: when the engine has failed, a client gets an HTTP error
// that says so at once (the docker CLI prints it), not a bare EOF.
func TestDockerRefusedWithReason(t *testing.T) {
	vm := newFakeVM(t, t.TempDir()+"/no-docker.sock")
	d := testDaemon()
	d.status.Guest = &api.Guest{Engine: string(proto.EngineFailed)}
	ctx, _ := startSessions(t, d, vm)
	client, server := unixPair(t)
	go d.forwardDocker(ctx)(server)
	client.Write([]byte("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"))
	client.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `berth: the Docker engine of instance \"t\" cannot be reached`) {
		t.Errorf("answer %d %s", resp.StatusCode, body)
	}
}

// TestStopDuringBoot: a stop request ends a boot that waits for an agent that never comes,
// at once rather than after the boot timeout.
func TestStopDuringBoot(t *testing.T) {
	d := testDaemon()
	d.cfg.BootTimeout = 600
	d.status.State = api.StateStarting
	never := &silentVM{}
	exit := watchExit(make(chan error))
	errc := make(chan error, 1)
	go func() { errc <- d.boot(t.Context(), never, exit) }()
	time.Sleep(100 * time.Millisecond)
	d.requestStop(true)
	select {
	case err := <-errc:
		if !errors.Is(err, errStopRequested) {
			t.Fatalf("boot returned %v, want errStopRequested", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("boot ignored the stop request")
	}
}

// silentVM's agent channel connects but nobody ever answers.
type silentVM struct{ fakeVM }

func (s *silentVM) DialAgent(ctx context.Context) (net.Conn, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// flakyVM refuses the agent channel a few times, as a vsock connect does before the agent
// listens.
type flakyVM struct {
	*fakeVM
	refusals int
}

func (f *flakyVM) DialAgent(ctx context.Context) (net.Conn, error) {
	if f.refusals > 0 {
		f.refusals--
		return nil, errors.New("connection refused")
	}
	return f.fakeVM.DialAgent(ctx)
}

func TestDialAgentRetries(t *testing.T) {
	vm := &flakyVM{fakeVM: newFakeVM(t, "/nonexistent"), refusals: 5}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	agent, err := dialAgent(ctx, vm, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("dialAgent gave up: %v", err)
	}
	agent.close()
	vm.refusals = 1 << 30
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := dialAgent(ctx, vm, slog.New(slog.DiscardHandler)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}

// TestDockerClientHalfClosedThenGone: a client that half-closed (`docker exec -i` with
// stdin at EOF) and then died, on a stream where the engine has nothing to send, is torn
// down too; no write would ever notice it.
func TestDockerClientHalfClosedThenGone(t *testing.T) {
	sock := t.TempDir() + "/docker.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	engineClosed := make(chan struct{}, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c) // up to the half-close; then silence
		// Wait, silent, until the agent closes its end (POLLHUP on ours).
		raw, _ := c.(*net.UnixConn).SyscallConn()
		for range 400 {
			hup := false
			raw.Control(func(fd uintptr) {
				p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if n, _ := unix.Poll(p, 0); n > 0 && p[0].Revents&unix.POLLHUP != 0 {
					hup = true
				}
			})
			if hup {
				engineClosed <- struct{}{}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	vm := newFakeVM(t, sock)
	d := testDaemon()
	ctx, _ := startSessions(t, d, vm)
	client, server := unixPair(t)
	done := make(chan struct{})
	go func() { d.forwardDocker(ctx)(server); close(done) }()
	client.Write([]byte("POST /exec/x/start"))
	client.(*net.UnixConn).CloseWrite()
	time.Sleep(200 * time.Millisecond)
	client.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the forward of a half-closed client that left did not end")
	}
	select {
	case <-engineClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine connection stayed open")
	}
}

// TestOpenHungAgentLeavesNothing: opens that time out against an agent that never answers
// leave no goroutine behind, and the keepalive ends the hung session (and so its streams).
func TestOpenHungAgentLeavesNothing(t *testing.T) {
	host, guest := unixPair(t)
	defer guest.Close()
	go func() {
		// The agent side: a session that accepts streams and never answers them.
		proto.AgentHandshake(guest)
		sess, err := yamux.Server(guest, proto.YamuxConfig())
		if err != nil {
			return
		}
		for {
			if _, err := sess.AcceptStream(); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := proto.HostHandshake(ctx, host); err != nil {
		t.Fatal(err)
	}
	agent, err := newAgentClient(host, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer agent.close()
	before := runtime.NumGoroutine()
	for range 50 {
		octx, ocancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		if _, _, err := agent.open(octx, proto.Request{Type: proto.TypeInfo}); err == nil {
			t.Fatal("an open against a silent agent succeeded")
		}
		ocancel()
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines after 50 timed-out opens, %d before", n, before)
	}
	// The keepalive finds the agent hung and ends the session, which frees every stream.
	pingEvery, pingTimeout = 50*time.Millisecond, 200*time.Millisecond
	defer func(e, t time.Duration) { pingEvery, pingTimeout = e, t }(pingEvery, pingTimeout)
	go agent.keepalive(t.Context())
	select {
	case <-agent.done():
	case <-time.After(5 * time.Second):
		t.Fatal("the keepalive did not give up on a hung agent")
	}
	// A closed session's streams are all closed (yamux forceClose); the session goes with
	// the agentClient, which the supervisor replaces.
}

func unixPair(t testing.TB) (net.Conn, net.Conn) {
	a, b := prototest.UnixPair(t)
	return a, b
}

// TestOpenOnLiveAfterSessionEnds: a stream opened as the host replaces its agent session
// (it closed a stalled one: a VM continued after SIGSTOP) goes to the next session instead
// of failing with "session shutdown" (TestIdlePause/ClockAfterSIGSTOP's `berth shell` right
// after the continue did).
func TestOpenOnLiveAfterSessionEnds(t *testing.T) {
	sock, _ := fakeEngine(t, false)
	vm := newFakeVM(t, sock)
	d := testDaemon()
	ctx, first := startSessions(t, d, vm)
	first.close()
	if _, _, err := first.open(ctx, proto.Request{Type: proto.TypeDocker}); !errors.As(err, new(*sessionGoneError)) {
		t.Fatalf("open on the closed session: %v, want a sessionGoneError", err)
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := d.openOnLive(octx, first, proto.Request{Type: proto.TypeDocker})
	if err != nil {
		t.Fatalf("open after the session was replaced: %v", err)
	}
	st.Write([]byte("ping"))
	proto.HalfStream{Stream: st}.CloseWrite()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(st); err != nil || string(got) != "PING" {
		t.Errorf("the stream on the new session answered %q, %v", got, err)
	}
	st.Close()
	// The docker path too.
	first2, _ := d.liveAgent(octx)
	first2.close()
	agent, st2, err := d.openDocker(octx)
	if err != nil || agent == first2 {
		t.Fatalf("docker open after the session was replaced: %v (same session: %v)", err, agent == first2)
	}
	st2.Close()
}
