package guestagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/guestagent/dockerapi"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/pubsub"
)

const (
	// defaultLogMax is the size past which engine.log (on tmpfs, in guest RAM) is cut: its
	// newest defaultLogMax bytes are copied to engine.log.1 and it is truncated.
	defaultLogMax = 8 << 20
	// defaultLogCheck is how often engine.log's size is checked.
	defaultLogCheck = 2 * time.Second
	// defaultReadyTimeout bounds how long a (re)started engine may take to answer before it
	// is reported failed; a cold boot under TCG takes minutes.
	defaultReadyTimeout = 10 * time.Minute
	// A daemon that ran for defaultStableRun is restarted after quickRestartDelay (systemd's
	// RestartSec): a crash after a good run costs the user no more than the daemon's own
	// start. One that dies sooner backs off from defaultRestartDelay, doubling up to
	// maxDaemonRestartDelay, so a daemon that cannot start does not spin.
	quickRestartDelay     = 100 * time.Millisecond
	defaultStableRun      = 10 * time.Second
	defaultRestartDelay   = time.Second
	maxDaemonRestartDelay = 30 * time.Second
	// defaultReapTimeout is how long a leftover daemon of an earlier serve process gets to
	// exit after SIGTERM before it is killed.
	defaultReapTimeout = 10 * time.Second
	// defaultAdoptTimeout is how long a lone leftover daemon of an earlier serve process
	// gets to answer before it is reaped instead of adopted.
	defaultAdoptTimeout = 10 * time.Second
	// readyPoll is the readiness poll interval.
	readyPoll = 200 * time.Millisecond
	// stopGrace bounds the waits of Stop beyond its context: for a killed daemon to be
	// reaped and for the engine's goroutines to end.
	stopGrace = 5 * time.Second
	// defaultContainerdSocket is containerd's address when its argv names none.
	defaultContainerdSocket = "/run/containerd/containerd.sock"
)

// Engine starts and supervises containerd and dockerd: a process that dies is restarted
// with backoff, and every state change is published to subscribers. The daemons outlive
// the serve process that started them; the next one adopts them (see Start).
type Engine struct {
	Containerd []string // argv
	Dockerd    []string // argv
	Socket     string   // dockerd's socket, polled for readiness
	// ContainerdSocket is containerd's socket, dialed for readiness; empty means the
	// --address of Containerd, or containerd's default.
	ContainerdSocket string
	LogPath          string // both daemons' output, cut to LogPath.1 past 8 MiB
	Log              *slog.Logger
	// Env is extra environment of both daemons (proxies from the host: engine_config.go).
	Env []string
	// Registry is the local registry's argv (registry.go); nil runs none. It is supervised
	// like the daemons but is no part of the engine's readiness.
	Registry []string

	// Tunables, zero meaning the default; tests shorten them.
	logMax       int64         // defaultLogMax
	logCheck     time.Duration // defaultLogCheck
	readyTimeout time.Duration // defaultReadyTimeout
	restartDelay time.Duration // defaultRestartDelay
	stableRun    time.Duration // defaultStableRun
	reapTimeout  time.Duration // defaultReapTimeout
	adoptTimeout time.Duration // defaultAdoptTimeout
	procRoot     string        // "/proc", scanned for leftover daemons

	mu       sync.Mutex
	state    proto.EngineState
	versions EngineVersions // versions.go
	events   pubsub.Topic[proto.Event]
	stopping bool
	procs    []*supervised
	logf     *os.File           // the daemons' stdout and stderr
	cancel   context.CancelFunc // ends the readiness monitor and the log cap
	wg       sync.WaitGroup     // the monitor, the log cap and the daemons' run goroutines
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
		Containerd:       []string{"/usr/bin/containerd", "--address=/run/containerd/containerd.sock", "--root=/var/lib/containerd", "--state=/run/containerd"},
		Dockerd:          dockerd,
		Socket:           "/run/docker.sock",
		ContainerdSocket: "/run/containerd/containerd.sock",
		LogPath:          "/run/berth/engine.log",
		Log:              log,
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
	return e.Versions().Engine
}

// Versions returns the engine stack's versions once the engine has answered.
func (e *Engine) Versions() EngineVersions {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.versions
}

// Subscribe returns a channel of state events, starting with the current state.
func (e *Engine) Subscribe() (<-chan proto.Event, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state
	if st == "" {
		st = proto.EngineStopped
	}
	// Under e.mu, as setState publishes: no change falls between the state read and the
	// subscription.
	return e.events.Subscribe(15, proto.Event{Time: time.Now(), Engine: st})
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
	e.events.Publish(ev) // a stalled subscriber loses events rather than stalling the engine
}

// Start launches both daemons and returns; readiness is reported as an event.
//
// Daemons of an earlier serve process may still run (they outlive it on purpose: a cold
// dockerd start takes tens of seconds under TCG). For each of dockerd and containerd, a
// lone leftover that answers (dockerd /_ping, containerd's socket) is adopted: it is not
// started again but supervised through a pidfd, and restarted as a child of this process
// once it exits. Several leftovers, or one that does not answer within the adopt timeout,
// are stopped instead and a new daemon is started, so there is never more than one of
// each. Start takes at most about the adopt timeout plus twice the reap timeout per daemon.
func (e *Engine) Start() error {
	e.mu.Lock()
	if e.procs != nil && !e.stopping {
		e.mu.Unlock()
		return fmt.Errorf("engine already started")
	}
	e.mu.Unlock()
	logf, err := openEngineLog(e.LogPath)
	if err != nil {
		return fmt.Errorf("failed to open engine log: %w", err)
	}
	adoptedDockerd, adoptedContainerd, adoptedRegistry := e.adoptOrReap()
	ctx, cancel := context.WithCancel(context.Background())
	// kick asks the monitor to wait for readiness: a daemon (re)started or exited.
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	restart := orDefault(e.restartDelay, defaultRestartDelay)
	cd := newSupervised("containerd", e.Containerd, logf, e.Log, restart)
	dd := newSupervised("dockerd", e.Dockerd, logf, e.Log, restart)
	cd.stableRun = orDefault(e.stableRun, defaultStableRun)
	dd.stableRun = cd.stableRun
	cd.env, dd.env = e.Env, e.Env
	dd.pidfile = argValue(e.Dockerd, "--pidfile", "-p")
	if adoptedContainerd != nil {
		cd.adopt(adoptedContainerd)
	}
	if adoptedDockerd != nil {
		dd.adopt(adoptedDockerd)
	}
	cd.onStart, dd.onStart = poke, poke
	cd.onExit = func(err error) {
		e.setState(proto.EngineStarting, fmt.Sprintf("containerd exited: %v; restarting", err))
		poke()
	}
	dd.onExit = func(err error) {
		e.setState(proto.EngineStarting, fmt.Sprintf("dockerd exited: %v; restarting", err))
		poke()
	}

	procs := []*supervised{dd, cd} // stop order: dockerd first
	if len(e.Registry) > 0 {
		rg := newSupervised("registry", e.Registry, logf, e.Log, restart)
		if adoptedRegistry != nil {
			rg.adopt(adoptedRegistry)
		}
		procs = append([]*supervised{rg}, procs...)
	}

	e.mu.Lock()
	e.stopping = false
	e.procs = procs
	e.logf = logf
	e.cancel = cancel
	e.mu.Unlock()
	e.setState(proto.EngineStarting, "")
	poke() // a daemon that never starts still ends in EngineFailed
	e.wg.Add(4)
	go func() { defer e.wg.Done(); e.monitor(ctx, kick) }()
	go func() {
		defer e.wg.Done()
		capLoop(ctx, e.LogPath, orDefault(e.logMax, defaultLogMax), orDefault(e.logCheck, defaultLogCheck), e.Log)
	}()
	go func() { defer e.wg.Done(); cd.run() }()
	go func() { defer e.wg.Done(); dd.run() }()
	if len(procs) > 2 {
		rg := procs[0]
		e.wg.Add(1)
		go func() { defer e.wg.Done(); rg.run() }()
	}
	return nil
}

// monitor is the engine's only readiness loop: each kick (a daemon started or exited)
// starts a bounded wait for the engine to answer, and kicks during a wait join it.
func (e *Engine) monitor(ctx context.Context, kick <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		e.waitReady(ctx, kick)
	}
}

// waitReady polls until dockerd answers /_ping and containerd's socket accepts a
// connection (dockerd's ping does not look at containerd, and a restarted containerd
// does not restart dockerd), then reports EngineRunning; after the ready timeout it
// reports EngineFailed. dockerd offers no readiness notification on this path.
func (e *Engine) waitReady(ctx context.Context, kick <-chan struct{}) {
	c := e.client()
	defer c.Close()
	timeout := orDefault(e.readyTimeout, defaultReadyTimeout)
	deadline := time.Now().Add(timeout)
	for first := true; ; first = false {
		err := e.probe(ctx, c)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			e.fetchVersion(ctx, c)
			if ctx.Err() == nil {
				e.setState(proto.EngineRunning, "")
			}
			return
		}
		if first {
			// Running until now (a daemon died in the meantime): no longer.
			e.setState(proto.EngineStarting, "")
		}
		if !time.Now().Before(deadline) {
			e.setState(proto.EngineFailed, fmt.Sprintf("engine did not answer within %s (%v); see `berth logs engine`", timeout, err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-kick: // a restart during the wait: keep waiting, within the same bound
		case <-time.After(readyPoll):
		}
	}
}

// probe returns nil when dockerd answers /_ping and containerd accepts a connection.
func (e *Engine) probe(ctx context.Context, c *dockerapi.Client) error {
	if err := e.pingDockerd(ctx, c); err != nil {
		return err
	}
	return e.dialContainerd(ctx)
}

// pingDockerd returns nil when dockerd answers /_ping.
func (e *Engine) pingDockerd(ctx context.Context, c *dockerapi.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		return fmt.Errorf("dockerd: %w", err)
	}
	return nil
}

// dialContainerd returns nil when containerd's socket accepts a connection.
func (e *Engine) dialContainerd(ctx context.Context) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "unix", e.containerdSocket())
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	conn.Close()
	return nil
}

// fetchVersion records the versions dockerd reports on GET /version (versions.go), asking
// the binaries for a component it leaves out.
func (e *Engine) fetchVersion(ctx context.Context, c *dockerapi.Client) {
	vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	dv, err := c.Version(vctx)
	cancel()
	if err != nil {
		e.Log.Warn("engine versions", "err", err)
		return
	}
	v := engineVersions(dv)
	var containerd string
	if len(e.Containerd) > 0 {
		containerd = e.Containerd[0]
	}
	v.fillFromBinaries(ctx, containerd)
	e.mu.Lock()
	e.versions = v
	e.mu.Unlock()
}

// client talks to dockerd's socket.
func (e *Engine) client() *dockerapi.Client { return dockerapi.New(e.Socket) }

func (e *Engine) containerdSocket() string {
	if e.ContainerdSocket != "" {
		return e.ContainerdSocket
	}
	if a := argValue(e.Containerd, "--address", "-a"); a != "" {
		return a
	}
	return defaultContainerdSocket
}

// Stop terminates dockerd (which stops containers with their own stop timeouts) and then
// containerd, killing what is still there when ctx ends. It returns once the engine's
// goroutines have ended (bounded), also when a daemon never started.
func (e *Engine) Stop(ctx context.Context) {
	e.mu.Lock()
	e.stopping = true
	procs, cancel, logf := e.procs, e.cancel, e.logf
	e.logf = nil
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	for _, p := range procs {
		p.stop(ctx)
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		e.Log.Warn("engine goroutines did not end in time")
	}
	if logf != nil {
		logf.Close()
	}
	e.setState(proto.EngineStopped, "")
}

// signalDaemons sends sig to the running dockerd and containerd (EngineNap): on
// SIGCONT containerd first, so dockerd wakes to an answering containerd.
func (e *Engine) signalDaemons(sig syscall.Signal) {
	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	order := []string{"dockerd", "containerd"}
	if sig == sigCont {
		order = []string{"containerd", "dockerd"}
	}
	for _, name := range order {
		for _, p := range procs {
			if p.name == name {
				p.signal(sig)
			}
		}
	}
}

// instance is one running instance of a daemon: a child of this process, or one of an
// earlier serve process adopted through a pidfd.
type instance interface {
	pid() int
	signal(syscall.Signal) error
	// wait returns once the instance has exited; only supervised.run calls it, once.
	wait() error
}

// child is an instance started by this process.
type child struct{ cmd *exec.Cmd }

func (c child) pid() int                        { return c.cmd.Process.Pid }
func (c child) signal(sig syscall.Signal) error { return c.cmd.Process.Signal(sig) }
func (c child) wait() error                     { return c.cmd.Wait() }

// supervised is one daemon restarted when it dies.
type supervised struct {
	name    string
	argv    []string
	env     []string // beside PATH and HOME
	out     *os.File // stdout and stderr; nil is /dev/null
	pidfile string   // removed after an instance exits when it still names it
	log     *slog.Logger
	backoff time.Duration // the first restart delay after a short run
	// stableRun is how long a run must last to be restarted after quickRestartDelay
	// instead of the backoff; zero is always the backoff.
	stableRun time.Duration
	onExit    func(error)
	onStart   func()

	mu       sync.Mutex
	cur      instance      // the current (or last) instance
	done     chan struct{} // closed when cur has exited
	adopted  bool          // cur is adopted and run has not waited for it yet
	stopping bool
	quit     chan struct{} // closed by stop: ends a restart backoff
	exited   chan struct{} // closed when run returns
}

func newSupervised(name string, argv []string, out *os.File, log *slog.Logger, backoff time.Duration) *supervised {
	return &supervised{name: name, argv: argv, out: out, log: log, backoff: backoff,
		quit: make(chan struct{}), exited: make(chan struct{})}
}

// adopt makes inst, a daemon already running, the first instance; run waits for it
// instead of starting one. It is called before run.
func (s *supervised) adopt(inst instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur, s.done, s.adopted = inst, make(chan struct{}), true
}

// spawn starts a new instance. The daemon writes straight into the log file: it outlives
// this process, so it must not write into a pipe to it.
func (s *supervised) spawn() (instance, error) {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	if s.out != nil {
		cmd.Stdout, cmd.Stderr = s.out, s.out
	}
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}, s.env...)
	cmd.SysProcAttr = daemonProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return child{cmd}, nil
}

func (s *supervised) run() {
	defer close(s.exited)
	backoff := s.backoff // the delay after the next short run
	for {
		ranWell := false
		s.mu.Lock()
		var (
			inst    instance
			done    chan struct{}
			err     error
			adopted = s.adopted
		)
		if adopted {
			// Waited for even when stopping: stop signals it and waits for done.
			inst, done = s.cur, s.done
			s.adopted = false
		} else if s.stopping {
			s.mu.Unlock()
			return
		} else {
			done = make(chan struct{})
			inst, err = s.spawn()
			if err == nil {
				s.cur, s.done = inst, done
			}
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Error("failed to start", "daemon", s.name, "err", err)
			close(done)
		} else {
			if adopted {
				s.log.Info("adopted", "daemon", s.name, "pid", inst.pid())
			} else {
				s.log.Info("started", "daemon", s.name, "pid", inst.pid())
			}
			if s.onStart != nil {
				s.onStart()
			}
			started := time.Now()
			err = inst.wait()
			close(done)
			s.removePidfile(inst.pid())
			ranWell = s.stableRun > 0 && time.Since(started) >= s.stableRun
		}
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		delay := backoff
		if ranWell {
			delay, backoff = min(quickRestartDelay, s.backoff), s.backoff
		} else {
			backoff = min(backoff*2, maxDaemonRestartDelay)
		}
		s.log.Warn("daemon exited", "daemon", s.name, "err", err, "restart_in", delay)
		if s.onExit != nil {
			s.onExit(err)
		}
		select {
		case <-s.quit:
			return
		case <-time.After(delay):
		}
	}
}

// removePidfile removes the daemon's pid file when it still names pid, which has exited.
// dockerd refuses to start while its pid file names a live process, and an adopted
// instance is a zombie (counted as live) until PID 1 reaps it.
func (s *supervised) removePidfile(pid int) {
	if s.pidfile == "" {
		return
	}
	b, err := os.ReadFile(s.pidfile)
	if err != nil {
		return
	}
	if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p == pid {
		os.Remove(s.pidfile)
	}
}

// signal sends sig to the current instance, if one runs.
func (s *supervised) signal(sig syscall.Signal) {
	s.mu.Lock()
	inst, done := s.cur, s.done
	s.mu.Unlock()
	if inst == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = inst.signal(sig)
	}
}

// stop ends the daemon: SIGCONT (it may be napping: EngineNap) and SIGTERM, SIGKILL when ctx ends, and returns once run has
// returned (each wait beyond ctx bounded by stopGrace).
func (s *supervised) stop(ctx context.Context) {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.quit)
	}
	inst, done := s.cur, s.done
	s.mu.Unlock()
	if inst != nil {
		_ = inst.signal(sigCont)
		_ = inst.signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-ctx.Done():
			s.log.Warn("daemon did not stop in time; killing", "daemon", s.name)
			_ = inst.signal(syscall.SIGKILL)
			select {
			case <-done:
			case <-time.After(stopGrace):
				s.log.Error("killed daemon did not exit in time", "daemon", s.name)
			}
		}
	}
	select {
	case <-s.exited:
	case <-time.After(stopGrace):
		s.log.Error("daemon supervisor did not end in time", "daemon", s.name)
	}
}

// argValue returns the value of the flag long (--flag=v or --flag v) or short (-f v,
// -f=v) in argv, or "".
func argValue(argv []string, long, short string) string {
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		for _, name := range []string{long, short} {
			if name == "" {
				continue
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
			if a == name && i+1 < len(argv) {
				return argv[i+1]
			}
		}
	}
	return ""
}

// exeMatcher reports whether a process's executable (/proc/PID/exe) is bin.
func exeMatcher(bin string) func(exe string) bool {
	paths := []string{bin}
	if !filepath.IsAbs(bin) {
		if p, err := exec.LookPath(bin); err == nil {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			paths = append(paths, r)
		}
	}
	return func(exe string) bool {
		exe = strings.TrimSuffix(exe, " (deleted)") // replaced since it started
		for _, p := range paths {
			if exe == p {
				return true
			}
		}
		return false
	}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
