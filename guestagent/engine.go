package guestagent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// Engine starts and supervises containerd and dockerd: a process that dies is restarted
// with backoff, and every state change is published to subscribers.
type Engine struct {
	Containerd []string // argv
	Dockerd    []string // argv
	Socket     string   // dockerd's socket, polled for readiness
	LogPath    string   // both daemons' output
	Log        *slog.Logger

	mu       sync.Mutex
	state    proto.EngineState
	version  string
	subs     map[chan proto.Event]struct{}
	stopping bool
	procs    []*supervised
	stopped  chan struct{}
}

// DefaultEngine is the engine as the guest image ships it.
func DefaultEngine(log *slog.Logger, hostGatewayIP string) *Engine {
	dockerd := []string{"/usr/sbin/dockerd",
		"--host=unix:///run/docker.sock",
		"--containerd=/run/containerd/containerd.sock",
		"--data-root=/var/lib/docker",
		"--exec-root=/run/docker",
		"--pidfile=/run/docker.pid",
	}
	if hostGatewayIP != "" {
		// `--add-host x:host-gateway` then reaches the host, as on Docker Desktop.
		dockerd = append(dockerd, "--host-gateway-ip="+hostGatewayIP)
	}
	return &Engine{
		Containerd: []string{"/usr/bin/containerd", "--address=/run/containerd/containerd.sock", "--root=/var/lib/containerd", "--state=/run/containerd"},
		Dockerd:    dockerd,
		Socket:     "/run/docker.sock",
		LogPath:    "/run/berth/engine.log",
		Log:        log,
	}
}

// State returns the current state.
func (e *Engine) State() proto.EngineState {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == "" {
		return proto.EngineStopped
	}
	return e.state
}

// Version returns the engine version once it has answered.
func (e *Engine) Version() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}

// Subscribe returns a channel of state events, starting with the current state.
func (e *Engine) Subscribe() (<-chan proto.Event, func()) {
	ch := make(chan proto.Event, 16)
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[chan proto.Event]struct{}{}
	}
	e.subs[ch] = struct{}{}
	st := e.state
	if st == "" {
		st = proto.EngineStopped
	}
	e.mu.Unlock()
	ch <- proto.Event{Time: time.Now(), Engine: st}
	return ch, func() {
		e.mu.Lock()
		delete(e.subs, ch)
		e.mu.Unlock()
	}
}

func (e *Engine) setState(st proto.EngineState, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == st && msg == "" {
		return
	}
	e.state = st
	ev := proto.Event{Time: time.Now(), Engine: st, Message: msg}
	e.Log.Info("engine state", "state", st, "msg", msg)
	for ch := range e.subs {
		select {
		case ch <- ev:
		default: // a stalled subscriber loses events rather than stalling the engine
		}
	}
}

// Start launches both daemons and returns at once; readiness is reported as an event.
func (e *Engine) Start() error {
	logf, err := os.OpenFile(e.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open engine log: %w", err)
	}
	e.stopped = make(chan struct{})
	e.setState(proto.EngineStarting, "")
	cd := &supervised{name: "containerd", argv: e.Containerd, out: logf, log: e.Log}
	dd := &supervised{name: "dockerd", argv: e.Dockerd, out: logf, log: e.Log}
	e.procs = []*supervised{dd, cd} // stop order: dockerd first
	cd.onExit = func(err error) {
		e.setState(proto.EngineStarting, fmt.Sprintf("containerd exited: %v; restarting", err))
	}
	dd.onExit = func(err error) { e.setState(proto.EngineStarting, fmt.Sprintf("dockerd exited: %v; restarting", err)) }
	dd.onStart = func() { go e.waitReady() }
	go cd.run()
	go dd.run()
	return nil
}

// waitReady polls the engine's /_ping until it answers. dockerd offers no readiness
// notification on this path, and the poll is short-lived and bounded.
func (e *Engine) waitReady() {
	c := e.client()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		stopping := e.stopping
		e.mu.Unlock()
		if stopping {
			return
		}
		resp, err := c.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				e.fetchVersion(c)
				e.setState(proto.EngineRunning, "")
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.setState(proto.EngineFailed, "engine did not answer within 10 minutes; see `berth logs engine`")
}

func (e *Engine) fetchVersion(c *http.Client) {
	resp, err := c.Get("http://docker/version")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var v struct{ Version string }
	if json.NewDecoder(resp.Body).Decode(&v) == nil {
		e.mu.Lock()
		e.version = v.Version
		e.mu.Unlock()
	}
}

func (e *Engine) client() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.Socket)
		}},
	}
}

// Stop terminates dockerd (which stops containers with their own stop timeouts) and then
// containerd, killing what is still there when ctx ends.
func (e *Engine) Stop(ctx context.Context) {
	e.mu.Lock()
	e.stopping = true
	procs := e.procs
	e.mu.Unlock()
	for _, p := range procs {
		p.stop(ctx)
	}
	e.setState(proto.EngineStopped, "")
}

// supervised is one daemon restarted when it dies.
type supervised struct {
	name    string
	argv    []string
	out     io.Writer
	log     *slog.Logger
	onExit  func(error)
	onStart func()

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool
}

func (s *supervised) run() {
	backoff := time.Second
	for {
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		cmd.Stdout, cmd.Stderr = s.out, s.out
		cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
		cmd.SysProcAttr = daemonProcAttr()
		done := make(chan struct{})
		err := cmd.Start()
		if err == nil {
			s.cmd, s.done = cmd, done
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Error("failed to start", "daemon", s.name, "err", err)
			close(done)
		} else {
			s.log.Info("started", "daemon", s.name, "pid", cmd.Process.Pid)
			if s.onStart != nil {
				s.onStart()
			}
			started := time.Now()
			err = cmd.Wait()
			close(done)
			if time.Since(started) > time.Minute {
				backoff = time.Second
			}
		}
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		s.log.Warn("daemon exited", "daemon", s.name, "err", err, "restart_in", backoff)
		if s.onExit != nil {
			s.onExit(err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (s *supervised) stop(ctx context.Context) {
	s.mu.Lock()
	s.stopping = true
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("daemon did not stop in time; killing", "daemon", s.name)
		cmd.Process.Kill()
		<-done
	}
}
