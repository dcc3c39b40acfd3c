// Package daemon is `berth hostd`: one process per running instance that owns the VM, the
// user-mode network, the agent session, the forwarded docker socket and the control API.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/netproxy"
	"github.com/berth-dev/berth/vm"
	"github.com/hashicorp/yamux"
)

// NewDriver builds the VM driver; it is a variable so each platform picks its own.
var NewDriver = newPlatformDriver

// Daemon runs one instance.
type Daemon struct {
	inst *store.Instance
	cfg  store.Config
	log  *slog.Logger

	mu        sync.Mutex
	status    api.Status
	subs      map[chan api.Event]struct{}
	history   []api.Event // this run's events, replayed to each new subscriber
	agent     *agentClient
	driver    vm.Driver
	startedAt time.Time

	dockerListener net.Listener
	ports          *portManager
	shares         *shares

	agentSet chan struct{}  // closed and replaced whenever agent changes
	running  chan struct{}  // closed once the instance reached Running
	wg       sync.WaitGroup // every goroutine of the run

	stopOnce  sync.Once
	stopping  chan struct{} // closed by the first stop request
	stopForce bool          // that request's force flag; read after stopping is closed
	vmDone    chan struct{} // closed when the VM is gone and cleaned up
}

// errStopRequested ends a boot that a stop request interrupted.
var errStopRequested = errors.New("stop requested")

// Run runs the daemon for inst until the VM stops. It returns an error when the VM could
// not be started or died.
func Run(ctx context.Context, inst *store.Instance, log *slog.Logger) error {
	lock, err := inst.TryLock()
	if err != nil {
		return err
	}
	defer lock.Release()
	setUmask()

	cfg, err := inst.Config()
	if err != nil {
		return err
	}
	d := &Daemon{
		inst:     inst,
		cfg:      cfg,
		log:      log,
		subs:     map[chan api.Event]struct{}{},
		stopping: make(chan struct{}),
		vmDone:   make(chan struct{}),
		shares:   &shares{},
		agentSet: make(chan struct{}),
		running:  make(chan struct{}),
	}
	d.status = api.Status{
		Name:          inst.Name,
		State:         api.StateStarting,
		PID:           os.Getpid(),
		Arch:          cfg.Arch,
		CPUs:          cfg.CPUs,
		MemoryGiB:     cfg.Memory,
		DiskGiB:       cfg.Disk,
		DockerSocket:  inst.Path(store.DockerSock),
		DockerContext: dockerctx.Name(inst.Name),
	}

	ctl, err := listenUnix(inst.Path(store.ControlSock))
	if err != nil {
		return err
	}
	srv := d.apiServer()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(peerCredListener(ctl, log))
	}()

	d.publish(api.Event{State: api.StateStarting})
	runErr := d.run(ctx)
	// Every goroutine of the run ends with it (run's context is cancelled on return).
	d.wg.Wait()
	final := api.StateStopped
	if runErr != nil {
		final = api.StateError
	}
	d.setState(final, "", runErr)
	inst.WriteState(store.State{State: final, Error: errString(runErr)})
	close(d.vmDone)
	// Waiting clients (the event stream, the stop request) finish their answer on vmDone;
	// Shutdown waits for them, bounded, then closes what is left.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-served
	return runErr
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// run boots the VM, serves it, and tears everything down.
func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.startedAt = time.Now()
	d.mu.Lock()
	d.status.StartedAt = d.startedAt
	d.mu.Unlock()
	d.inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: d.startedAt})

	d.phaseStart(api.PhasePrepare, "checking the guest image and disks")
	img, err := FindImage(d.cfg)
	if err != nil {
		return err
	}
	// Fail now, not after a minute of booting, if the docker socket's path is taken.
	if err := clearSocketPath(d.inst.Path(store.DockerSock)); err != nil {
		return err
	}
	if err := prepareDataDisk(d.inst.Path(store.DataDisk), d.cfg.Disk); err != nil {
		return err
	}
	runDir := d.inst.Path(store.RuntimeDir)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	// Only sockets of this run live there (QMP, agent port, virtiofsd); their servers do not
	// all remove them, so the directory is emptied when the run ends.
	defer clearDir(runDir)

	vmShares, err := d.prepareShares(ctx, runDir)
	defer d.stopShares()
	if err != nil {
		return err
	}

	netCfg := netproxy.DefaultConfig()
	var nics []vm.NIC
	if platformNetwork {
		network, err := netproxy.New(netCfg, d.log.With("component", "netproxy"))
		if err != nil {
			return fmt.Errorf("failed to start the network: %w", err)
		}
		defer network.Close()
		// The VM's end stays open until the VM is gone: vz reads it for the VM's life.
		nicFile, err := network.AttachDatagram(ctx)
		if err != nil {
			return fmt.Errorf("failed to attach the network: %w", err)
		}
		defer nicFile.Close()
		nics = []vm.NIC{{MAC: netCfg.GuestMAC, Conn: nicFile}}
	}

	vmCfg := vm.Config{
		Name:      d.inst.Name,
		Arch:      d.cfg.Arch,
		CPUs:      d.cfg.CPUs,
		MemoryMiB: uint64(d.cfg.Memory) * 1024,
		Kernel:    img.Kernel,
		Initrd:    img.Initrd,
		CmdLine:   "loglevel=5 panic=-1 berth.listeners=" + d.cfg.PortListeners,
		Disks: []vm.Disk{
			{Path: img.Root, ReadOnly: true, ID: "berth-root"},
			{Path: d.inst.Path(store.DataDisk), ID: "berth-data"},
		},
		NICs:       nics,
		Shares:     vmShares,
		Agent:      vm.AgentChannel{VsockPort: proto.VsockPort, SerialName: proto.SerialName},
		ConsoleLog: d.inst.Path(store.ConsoleLog),
		RuntimeDir: runDir,
		Accel:      d.cfg.Accel,
	}
	// A fresh console log per boot keeps `berth logs console` about this boot.
	os.Remove(vmCfg.ConsoleLog)
	drv, err := NewDriver(vmCfg, d.log.With("component", "vm"))
	if err != nil {
		return err
	}
	if a, ok := drv.(interface{ Accel() string }); ok {
		d.mu.Lock()
		d.status.Accel = a.Accel()
		d.mu.Unlock()
	}
	d.phaseDone(api.PhasePrepare, "image and disks ready")

	d.phaseStart(api.PhaseKernel, "booting the VM")
	exitCh, err := drv.Start(ctx)
	if err != nil {
		return err
	}
	exit := watchExit(exitCh)
	d.mu.Lock()
	d.driver = drv
	d.mu.Unlock()
	// A full host disk pauses the VM (QEMU werror=enospc): show it, resume when there is room.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.watchHostDisk(ctx, drv)
	}()
	d.inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: d.startedAt})

	err = d.boot(ctx, drv, exit)
	if errors.Is(err, errStopRequested) {
		d.log.Info("stop requested during boot", "force", d.stopForce)
		return d.shutdown(drv, exit, d.stopForce)
	}
	if err != nil {
		d.log.Error("start failed", "err", err)
		d.killVM(drv, exit)
		return fmt.Errorf("%w (see the guest console: berth logs console %s)", err, d.inst.Name)
	}
	return d.serve(ctx, drv, exit)
}

// boot waits for the agent and the engine, then opens the docker socket.
func (d *Daemon) boot(ctx context.Context, drv vm.Driver, exit *vmExit) error {
	timeout := time.Duration(d.cfg.BootTimeout) * time.Second
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The VM dying, or a stop request, aborts every wait of the boot at once.
	vmErr := make(chan error, 1)
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-exit.done:
			err := exit.err
			if err == nil {
				err = errors.New("the VM powered off during boot")
			}
			vmErr <- err
			cancel()
		case <-d.stopping:
			cancel()
		case <-bctx.Done():
		}
	}()
	defer watch.Wait()
	wrap := func(what string, err error) error {
		select {
		case verr := <-vmErr:
			return fmt.Errorf("VM exited while waiting for %s: %w", what, verr)
		default:
		}
		select {
		case <-d.stopping:
			return errStopRequested
		default:
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s waiting for %s (bootTimeout in %s)", timeout, what, d.inst.Path(store.ConfigFile))
		}
		return fmt.Errorf("failed waiting for %s: %w", what, err)
	}

	actx, acancel := context.WithTimeout(bctx, timeout)
	defer acancel()
	agent, err := dialAgent(actx, drv, d.log.With("component", "agent"))
	if err != nil {
		return wrap("the agent channel", err)
	}
	info, err := d.greet(actx, agent)
	if err != nil {
		agent.close()
		return wrap("the guest agent", err)
	}
	d.mu.Lock()
	d.status.Guest = info
	// The kernel's share is what the guest measured before running /init.
	d.status.Phases = append(d.status.Phases, api.PhaseTiming{Phase: api.PhaseKernel, At: info.KernelBoot})
	d.mu.Unlock()
	d.setAgent(agent)
	d.publish(api.Event{State: api.StateStarting, Phase: api.PhaseKernel, Done: true,
		Message: fmt.Sprintf("Linux %s reached /init after %.1fs of guest uptime", info.Kernel, info.KernelBoot.Seconds())})
	d.phaseDone(api.PhaseAgent, "guest agent "+info.AgentVersion+" up, IP "+info.IP)
	d.mountShares(ctx, agent)

	d.phaseStart(api.PhaseEngine, "starting the Docker engine")
	d.ports = newPortManager(d.liveAgent, d.cfg.PortBindAddress == "0.0.0.0",
		d.log.With("component", "ports"), func(msg string, err error) {
			d.mu.Lock()
			state := d.status.State
			d.mu.Unlock()
			d.publish(api.Event{State: state, Message: msg, Error: errString(err)})
		})
	engineUp := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.superviseAgent(ctx, drv, agent, engineUp)
	}()
	ectx, ecancel := context.WithTimeout(bctx, timeout)
	defer ecancel()
	select {
	case err := <-engineUp:
		if err != nil {
			return wrap("the Docker engine", err)
		}
	case <-ectx.Done():
		return wrap("the Docker engine", ectx.Err())
	}
	if info, err := agent.info(bctx); err == nil {
		d.mu.Lock()
		d.status.Guest = info
		d.mu.Unlock()
	}
	d.phaseDone(api.PhaseEngine, "Docker engine ready")

	ln, err := listenUnix(d.inst.Path(store.DockerSock))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.dockerListener = ln
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		proto.AcceptLoop(ctx, peerCredListener(ln, d.log), d.log, d.forwardDocker(ctx))
	}()
	// Windows' docker CLI speaks named pipes: the engine is on one there too.
	dockerHost := "unix://" + d.inst.Path(store.DockerSock)
	if pl, host, err := platformDockerListener(d.inst.Name); err != nil {
		return err
	} else if pl != nil {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			proto.AcceptLoop(ctx, pl, d.log, d.forwardDocker(ctx))
		}()
		dockerHost = host
	}
	ctxName := dockerctx.Name(d.inst.Name)
	if err := dockerctx.Ensure(ctxName, dockerHost, fmt.Sprintf("berth instance %q", d.inst.Name)); err != nil {
		d.log.Warn("failed to write the docker context", "context", ctxName, "err", err)
	}
	d.phaseDone(api.PhaseSocket, "docker socket and context ready")
	d.setState(api.StateRunning, "", nil)
	d.inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid(), StartedAt: d.startedAt})
	// Disk events start after Running, so that a start's progress never shows one.
	close(d.running)
	return nil
}

// greet checks a new agent session: its protocol, and sets the guest clock.
func (d *Daemon) greet(ctx context.Context, agent *agentClient) (*proto.Info, error) {
	info, err := agent.info(ctx)
	if err != nil {
		return nil, err
	}
	if info.ProtocolVersion != proto.Version {
		return nil, fmt.Errorf("guest agent speaks protocol %d, this berth speaks %d: reinstall berth and its guest image together (berth install)", info.ProtocolVersion, proto.Version)
	}
	if _, err := agent.call(ctx, proto.Request{Type: proto.TypeTime, TimeUnixNano: time.Now().UnixNano()}); err != nil {
		d.log.Warn("failed to set the guest clock", "err", err)
	}
	return info, nil
}

// setAgent makes agent the session every new stream goes to, and wakes liveAgent waiters.
func (d *Daemon) setAgent(agent *agentClient) {
	d.mu.Lock()
	d.agent = agent
	close(d.agentSet)
	d.agentSet = make(chan struct{})
	d.mu.Unlock()
}

// liveAgent returns the agent session, waiting while the host reconnects to a restarted
// agent, until ctx ends.
func (d *Daemon) liveAgent(ctx context.Context) (*agentClient, error) {
	for {
		d.mu.Lock()
		agent, changed := d.agent, d.agentSet
		d.mu.Unlock()
		if agent != nil && !agent.closed() {
			return agent, nil
		}
		select {
		case <-changed:
		case <-d.vmDone:
			return nil, fmt.Errorf("instance %q stopped", d.inst.Name)
		case <-ctx.Done():
			return nil, fmt.Errorf("the guest agent is not reachable: %w", ctx.Err())
		}
	}
}

// superviseAgent runs the agent's sessions for the life of the run: the streams that mirror
// the guest (engine state, ports, disk usage, change notification) are opened on each
// session, and when a session ends (the agent's serve process restarted, or stopped
// answering pings) the host reconnects with backoff and opens them all again, so the
// guest's full state is re-synced, never only what changed after. up gets the first
// engine readiness.
func (d *Daemon) superviseAgent(ctx context.Context, drv vm.Driver, agent *agentClient, up chan<- error) {
	for {
		d.runSession(ctx, agent, up)
		up = nil
		agent.close()
		if ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		state := d.status.State
		d.mu.Unlock()
		if state == api.StateRunning {
			d.setState(api.StateDegraded, "lost the guest agent; reconnecting", nil)
		}
		if agent = d.reconnect(ctx, drv); agent == nil {
			return
		}
	}
}

// runSession runs one session's followers until the session or ctx ends, and returns
// once every one of them has.
func (d *Daemon) runSession(ctx context.Context, agent *agentClient, up chan<- error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	follow := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx); err != nil && sctx.Err() == nil && !agent.closed() {
				d.log.Warn("agent stream ended", "stream", name, "err", err)
			}
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); agent.keepalive(sctx) }()
	go func() { defer wg.Done(); d.followEngine(sctx, agent, up) }()
	follow(proto.TypePorts, func(ctx context.Context) error { return d.ports.follow(ctx, agent) })
	follow(proto.TypeNotify, func(ctx context.Context) error { return d.shares.notify.serve(ctx, agent) })
	follow(proto.TypeDisk, func(ctx context.Context) error {
		select {
		case <-d.running:
		case <-ctx.Done():
			return nil
		}
		return d.followDisk(ctx, agent)
	})
	select {
	case <-agent.done():
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
}

// reconnect dials the agent until a session is up (nil when ctx ended first).
func (d *Daemon) reconnect(ctx context.Context, drv vm.Driver) *agentClient {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		agent, err := dialAgent(actx, drv, d.log.With("component", "agent"))
		var info *proto.Info
		if err == nil {
			if info, err = d.greet(actx, agent); err != nil {
				agent.close()
			}
		}
		cancel()
		if err == nil {
			d.mu.Lock()
			d.status.Guest = info
			d.mu.Unlock()
			d.setAgent(agent)
			d.log.Info("reconnected to the guest agent", "agent", info.AgentVersion)
			return agent
		}
		d.log.Warn("failed to reconnect to the guest agent", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// followEngine mirrors the agent's engine events into the instance state. The first
// "running" is reported on up (nil on later sessions: the engine was up before).
func (d *Daemon) followEngine(ctx context.Context, agent *agentClient, up chan<- error) {
	reported := up == nil
	report := func(err error) {
		if !reported {
			reported = true
			up <- err
		}
	}
	st, _, err := agent.open(ctx, proto.Request{Type: proto.TypeEvents})
	if err != nil {
		report(err)
		return
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()); st.Close() })
	defer stop()
	err = proto.ReadLines(st, func(line []byte, _ error) {
		var ev proto.Event
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		if ev.Message != "" {
			d.log.Info("engine", "state", ev.Engine, "msg", ev.Message)
		}
		d.mu.Lock()
		if d.status.Guest != nil {
			d.status.Guest.Engine = ev.Engine
		}
		state := d.status.State
		d.mu.Unlock()
		switch ev.Engine {
		case proto.EngineRunning:
			if !reported {
				report(nil)
			} else if state == api.StateDegraded {
				d.setState(api.StateRunning, "engine recovered", nil)
			}
		case proto.EngineFailed:
			if !reported {
				report(errors.New(ev.Message))
			} else if state == api.StateRunning {
				d.setState(api.StateDegraded, "", errors.New(ev.Message))
			}
		case proto.EngineStarting:
			if reported && state == api.StateRunning {
				d.setState(api.StateDegraded, ev.Message, nil)
			}
		}
	})
	report(fmt.Errorf("engine event stream ended: %v", err))
}

// serve runs until the VM exits or a stop is requested.
func (d *Daemon) serve(ctx context.Context, drv vm.Driver, exit *vmExit) error {
	defer d.closeDocker()
	select {
	case <-exit.done:
		err := exit.err
		if err == nil {
			err = errors.New("the VM powered off by itself")
		}
		return fmt.Errorf("VM exited unexpectedly: %w", err)
	case <-d.stopping:
		return d.shutdown(drv, exit, d.stopForce)
	case <-ctx.Done():
		return d.shutdown(drv, exit, false)
	}
}

// shutdown stops the VM: through the agent (engine stops its containers, disks are
// synced), then an ACPI power-off, then a kill — each step bounded.
func (d *Daemon) shutdown(drv vm.Driver, exit *vmExit, force bool) error {
	d.setState(api.StateStopping, "stopping", nil)
	d.closeDocker()
	if !force {
		d.mu.Lock()
		agent := d.agent
		d.mu.Unlock()
		hadAgent := agent != nil && !agent.closed()
		if hadAgent {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := agent.call(ctx, proto.Request{Type: proto.TypeShutdown})
			cancel()
			if err != nil {
				d.log.Warn("agent shutdown request failed", "err", err)
			}
			if waitExit(exit, 90*time.Second) {
				return nil
			}
			d.log.Warn("guest did not power off in 90s; sending ACPI power-off")
		} else {
			d.log.Info("no agent session; sending ACPI power-off")
		}
		// Without an agent (a stop during boot) the guest may not handle the power key
		// yet: wait briefly, not the full grace.
		grace := 15 * time.Second
		if !hadAgent {
			grace = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := drv.Stop(ctx, false)
		cancel()
		if err == nil && waitExit(exit, grace) {
			return nil
		}
		d.log.Warn("guest ignored the power-off; forcing")
	}
	d.killVM(drv, exit)
	return nil
}

func (d *Daemon) killVM(drv vm.Driver, exit *vmExit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := drv.Stop(ctx, true); err != nil {
		d.log.Warn("force stop failed", "err", err)
	}
	if !waitExit(exit, 30*time.Second) {
		d.log.Error("VM did not exit after a forced stop")
	}
}

// vmExit turns the driver's one-shot exit channel into one that any number of waits can
// watch: done is closed when the VM is gone, err is then its exit error.
type vmExit struct {
	done chan struct{}
	err  error
}

func watchExit(ch <-chan error) *vmExit {
	e := &vmExit{done: make(chan struct{})}
	go func() {
		e.err = <-ch
		close(e.done)
	}()
	return e
}

func waitExit(exit *vmExit, d time.Duration) bool {
	select {
	case <-exit.done:
		return true
	case <-time.After(d):
		return false
	}
}

// requestStop asks run to shut down, during boot as well; only the first request counts.
func (d *Daemon) requestStop(force bool) {
	d.stopOnce.Do(func() {
		d.stopForce = force
		close(d.stopping)
	})
}

func (d *Daemon) closeDocker() {
	d.mu.Lock()
	ln := d.dockerListener
	d.dockerListener = nil
	pm := d.ports
	d.mu.Unlock()
	if pm != nil {
		pm.closeAll()
	}
	if ln != nil {
		ln.Close()
	}
}

// forwardDocker returns the handler of docker socket connections: each one is a stream to
// the engine socket in the guest, torn down when either side leaves.
func (d *Daemon) forwardDocker(ctx context.Context) func(net.Conn) {
	return func(c net.Conn) {
		hc, ok := c.(proto.HalfCloser)
		if !ok {
			c.Close()
			return
		}
		// A restarted agent is waited for, so a client never sees the gap.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		agent, err := d.liveAgent(octx)
		var st *yamux.Stream
		if err == nil {
			st, _, err = agent.open(octx, proto.Request{Type: proto.TypeDocker})
		}
		if err != nil {
			d.log.Warn("docker connection refused", "err", err)
			c.Close()
			return
		}
		proto.Pipe(ctx, hc, agent.stream(st))
	}
}

// phaseStart announces a phase.
func (d *Daemon) phaseStart(phase, msg string) {
	d.mu.Lock()
	d.status.Phase = phase
	d.mu.Unlock()
	d.publish(api.Event{State: api.StateStarting, Phase: phase, Message: msg})
}

// phaseDone records and announces when a phase completed.
func (d *Daemon) phaseDone(phase, msg string) {
	at := time.Since(d.startedAt)
	d.mu.Lock()
	d.status.Phases = append(d.status.Phases, api.PhaseTiming{Phase: phase, At: at})
	d.mu.Unlock()
	d.log.Info("phase done", "phase", phase, "after", at.Round(time.Millisecond))
	d.publish(api.Event{State: api.StateStarting, Phase: phase, Message: msg, Done: true})
}

func (d *Daemon) setState(state, msg string, err error) {
	d.mu.Lock()
	d.status.State = state
	if state != api.StateStarting {
		d.status.Phase = ""
	}
	d.status.Error = errString(err)
	d.mu.Unlock()
	d.publish(api.Event{State: state, Message: msg, Error: errString(err)})
}

func (d *Daemon) publish(ev api.Event) {
	ev.Time = time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	// A run has a few dozen events at most (phases and state changes). Disk events come
	// for as long as the instance runs: only the latest stays, as the current usage.
	if ev.Type == api.EventDisk {
		d.history = slices.DeleteFunc(d.history, func(e api.Event) bool { return e.Type == api.EventDisk })
	}
	if len(d.history) < 1000 {
		d.history = append(d.history, ev)
	}
	for ch := range d.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Status returns a snapshot.
func (d *Daemon) Status() api.Status {
	d.mu.Lock()
	pm := d.ports
	d.mu.Unlock()
	var ports []api.PortForward
	if pm != nil {
		// Outside d.mu: the port manager takes its own lock and then publishes events.
		ports = pm.list()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	s.Ports = ports
	s.Hostd = selfStats()
	s.Phases = append([]api.PhaseTiming(nil), d.status.Phases...)
	if d.status.Guest != nil {
		g := *d.status.Guest
		s.Guest = &g
	}
	return s
}

// subscribe returns every event of this run so far, then the new ones, so a client that
// connects late still sees each phase.
func (d *Daemon) subscribe() (chan api.Event, func()) {
	d.mu.Lock()
	ch := make(chan api.Event, len(d.history)+64)
	for _, ev := range d.history {
		ch <- ev
	}
	d.subs[ch] = struct{}{}
	d.mu.Unlock()
	return ch, func() {
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
	}
}

// Image is a guest image on disk.
type Image struct{ Dir, Kernel, Initrd, Root string }

// FindImage locates the guest image for cfg.Arch: the config's images dir, else
// $BERTH_IMAGES, else ~/.berth/_images.
func FindImage(cfg store.Config) (Image, error) {
	base := cfg.Images
	if base == "" {
		base = os.Getenv("BERTH_IMAGES")
	}
	if base == "" {
		root, err := store.Root()
		if err != nil {
			return Image{}, err
		}
		base = filepath.Join(root, store.ImagesDir)
	}
	dir := filepath.Join(base, cfg.Arch)
	// Packages ship a read-only image (/usr/share/berth/images/<arch>, or beside the binary in
	// the macOS app and the Windows install dir; see image.SystemDirs). It is used when no
	// images dir was named and ~/.berth/_images has none. docs/install.md lists the order.
	if cfg.Images == "" && os.Getenv("BERTH_IMAGES") == "" && !image.Complete(dir) {
		if sys := image.FindSystem(cfg.Arch); sys != "" {
			dir = sys
		}
	}
	img := Image{Dir: dir, Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Root: filepath.Join(dir, "root.img")}
	for _, p := range []string{img.Kernel, img.Initrd, img.Root} {
		if _, err := os.Stat(p); err != nil {
			return img, fmt.Errorf("guest image for %s not found (%s is missing): build it with `make image` and install it with `make run`, or set BERTH_IMAGES", cfg.Arch, p)
		}
	}
	return img, nil
}

// prepareDataDisk creates the sparse data disk or grows it to sizeGiB. It never shrinks:
// that would cut off a filesystem holding the user's images and volumes.
func prepareDataDisk(path string, sizeGiB int) error {
	want := int64(sizeGiB) << 30
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open data disk: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() >= want {
		return nil
	}
	if err := f.Truncate(want); err != nil {
		return fmt.Errorf("failed to size data disk %s to %d GiB: %w", path, sizeGiB, err)
	}
	return nil
}

// clearDir removes what is inside dir.
func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
