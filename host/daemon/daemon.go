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

	stopOnce sync.Once
	stopReq  chan bool     // force flag
	vmDone   chan struct{} // closed when the VM is gone and cleaned up
}

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
		inst:    inst,
		cfg:     cfg,
		log:     log,
		subs:    map[chan api.Event]struct{}{},
		stopReq: make(chan bool, 1),
		vmDone:  make(chan struct{}),
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
	go srv.Serve(peerCredListener(ctl, log))
	defer srv.Close()

	d.publish(api.Event{State: api.StateStarting})
	runErr := d.run(ctx)
	final := api.StateStopped
	if runErr != nil {
		final = api.StateError
	}
	d.setState(final, "", runErr)
	inst.WriteState(store.State{State: final, Error: errString(runErr)})
	close(d.vmDone)
	// Let waiting clients read the last event and the stop answer.
	time.Sleep(200 * time.Millisecond)
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
	exit, err := drv.Start(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.driver = drv
	d.mu.Unlock()
	d.inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: d.startedAt})

	err = d.boot(ctx, drv, exit)
	if err != nil {
		d.log.Error("start failed", "err", err)
		d.killVM(drv, exit)
		return fmt.Errorf("%w (see the guest console: berth logs console %s)", err, d.inst.Name)
	}
	return d.serve(ctx, drv, exit)
}

// boot waits for the agent and the engine, then opens the docker socket.
func (d *Daemon) boot(ctx context.Context, drv vm.Driver, exit <-chan error) error {
	timeout := time.Duration(d.cfg.BootTimeout) * time.Second
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The VM dying, or a stop request, aborts every wait of the boot.
	vmErr := make(chan error, 1)
	go func() {
		select {
		case err := <-exit:
			if err == nil {
				err = errors.New("the VM powered off during boot")
			}
			vmErr <- err
			cancel()
		case <-bctx.Done():
		}
	}()
	wrap := func(what string, err error) error {
		select {
		case verr := <-vmErr:
			return fmt.Errorf("VM exited while waiting for %s: %w", what, verr)
		default:
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s waiting for %s (bootTimeout in %s)", timeout, what, d.inst.Path(store.ConfigFile))
		}
		return fmt.Errorf("failed waiting for %s: %w", what, err)
	}

	actx, acancel := context.WithTimeout(bctx, timeout)
	defer acancel()
	conn, err := drv.DialAgent(actx)
	if err != nil {
		return wrap("the agent channel", err)
	}
	agent, err := newAgentClient(conn)
	if err != nil {
		return err
	}
	info, err := agent.info(actx)
	if err != nil {
		agent.close()
		return wrap("the guest agent", err)
	}
	if info.ProtocolVersion != proto.Version {
		agent.close()
		return fmt.Errorf("guest agent speaks protocol %d, this berth speaks %d: rebuild the image (make image) or reinstall berth", info.ProtocolVersion, proto.Version)
	}
	if _, err := agent.call(actx, proto.Request{Type: proto.TypeTime, TimeUnixNano: time.Now().UnixNano()}); err != nil {
		d.log.Warn("failed to set the guest clock", "err", err)
	}
	d.mu.Lock()
	d.agent = agent
	d.status.Guest = info
	// The kernel's share is what the guest measured before running /init.
	d.status.Phases = append(d.status.Phases, api.PhaseTiming{Phase: api.PhaseKernel, At: info.KernelBoot})
	d.mu.Unlock()
	d.publish(api.Event{State: api.StateStarting, Phase: api.PhaseKernel, Done: true,
		Message: fmt.Sprintf("Linux %s reached /init after %.1fs of guest uptime", info.Kernel, info.KernelBoot.Seconds())})
	d.phaseDone(api.PhaseAgent, "guest agent "+info.AgentVersion+" up, IP "+info.IP)
	d.mountShares(ctx, agent)

	d.phaseStart(api.PhaseEngine, "starting the Docker engine")
	engineUp := make(chan error, 1)
	go d.followEngine(ctx, agent, engineUp)
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
	go d.serveDocker(ln)
	d.mu.Lock()
	d.dockerListener = ln
	d.mu.Unlock()
	// Windows' docker CLI speaks named pipes: the engine is on one there too.
	dockerHost := "unix://" + d.inst.Path(store.DockerSock)
	if pl, host, err := platformDockerListener(d.inst.Name); err != nil {
		return err
	} else if pl != nil {
		go d.serveDocker(pl)
		go func() { <-ctx.Done(); pl.Close() }()
		dockerHost = host
	}
	ctxName := dockerctx.Name(d.inst.Name)
	if err := dockerctx.Ensure(ctxName, dockerHost, fmt.Sprintf("berth instance %q", d.inst.Name)); err != nil {
		d.log.Warn("failed to write the docker context", "context", ctxName, "err", err)
	}
	d.phaseDone(api.PhaseSocket, "docker socket and context ready")
	pm := newPortManager(func() *agentClient { return agent }, d.cfg.PortBindAddress == "0.0.0.0",
		d.log.With("component", "ports"), func(msg string, err error) {
			d.mu.Lock()
			state := d.status.State
			d.mu.Unlock()
			d.publish(api.Event{State: state, Message: msg, Error: errString(err)})
		})
	d.mu.Lock()
	d.ports = pm
	d.mu.Unlock()
	go func() {
		if err := pm.follow(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("port list stream ended", "err", err)
		}
	}()
	d.setState(api.StateRunning, "", nil)
	d.inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid(), StartedAt: d.startedAt})
	// Disk events start after Running, so that a start's progress never shows one.
	go func() {
		if err := d.followDisk(ctx, agent); err != nil && ctx.Err() == nil {
			d.log.Warn("disk usage stream ended", "err", err)
		}
	}()
	return nil
}

// followEngine mirrors the agent's engine events into the instance state. The first
// "running" is reported on up.
func (d *Daemon) followEngine(ctx context.Context, agent *agentClient, up chan<- error) {
	st, _, err := agent.open(ctx, proto.Request{Type: proto.TypeEvents})
	if err != nil {
		up <- err
		return
	}
	defer st.Close()
	go func() { <-ctx.Done(); st.Close() }()
	sc := proto.Scanner(st)
	reported := false
	for sc.Scan() {
		var ev proto.Event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
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
				reported = true
				up <- nil
			} else if state == api.StateDegraded {
				d.setState(api.StateRunning, "engine recovered", nil)
			}
		case proto.EngineFailed:
			if !reported {
				reported = true
				up <- errors.New(ev.Message)
			} else if state == api.StateRunning {
				d.setState(api.StateDegraded, "", errors.New(ev.Message))
			}
		case proto.EngineStarting:
			if reported && state == api.StateRunning {
				d.setState(api.StateDegraded, ev.Message, nil)
			}
		}
	}
	if !reported {
		up <- fmt.Errorf("engine event stream ended: %v", sc.Err())
	}
}

// serve runs until the VM exits or a stop is requested.
func (d *Daemon) serve(ctx context.Context, drv vm.Driver, exit <-chan error) error {
	defer d.closeDocker()
	select {
	case err := <-exit:
		if err == nil {
			err = errors.New("the VM powered off by itself")
		}
		return fmt.Errorf("VM exited unexpectedly: %w", err)
	case force := <-d.stopReq:
		return d.shutdown(drv, exit, force)
	case <-ctx.Done():
		return d.shutdown(drv, exit, false)
	}
}

// shutdown stops the VM: through the agent (engine stops its containers, disks are
// synced), then an ACPI power-off, then a kill — each step bounded.
func (d *Daemon) shutdown(drv vm.Driver, exit <-chan error, force bool) error {
	d.setState(api.StateStopping, "stopping", nil)
	d.closeDocker()
	if !force {
		d.mu.Lock()
		agent := d.agent
		d.mu.Unlock()
		if agent != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := agent.call(ctx, proto.Request{Type: proto.TypeShutdown})
			cancel()
			if err != nil {
				d.log.Warn("agent shutdown request failed", "err", err)
			}
		}
		if waitExit(exit, 90*time.Second) {
			return nil
		}
		d.log.Warn("guest did not power off in 90s; sending ACPI power-off")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := drv.Stop(ctx, false)
		cancel()
		if err == nil && waitExit(exit, 15*time.Second) {
			return nil
		}
		d.log.Warn("guest ignored the power-off; forcing")
	}
	d.killVM(drv, exit)
	return nil
}

func (d *Daemon) killVM(drv vm.Driver, exit <-chan error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := drv.Stop(ctx, true); err != nil {
		d.log.Warn("force stop failed", "err", err)
	}
	if !waitExit(exit, 30*time.Second) {
		d.log.Error("VM did not exit after a forced stop")
	}
}

func waitExit(exit <-chan error, d time.Duration) bool {
	select {
	case <-exit:
		return true
	case <-time.After(d):
		return false
	}
}

// requestStop asks run to shut down; only the first request counts.
func (d *Daemon) requestStop(force bool) {
	d.stopOnce.Do(func() { d.stopReq <- force })
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

// serveDocker forwards each client connection as one agent stream.
func (d *Daemon) serveDocker(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		hc, ok := c.(proto.HalfCloser)
		if !ok {
			c.Close()
			continue
		}
		go d.forwardDocker(hc)
	}
}

func (d *Daemon) forwardDocker(c proto.HalfCloser) {
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	if agent == nil {
		c.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, _, err := agent.open(ctx, proto.Request{Type: proto.TypeDocker})
	cancel()
	if err != nil {
		d.log.Warn("docker connection refused", "err", err)
		c.Close()
		return
	}
	proto.Pipe(c, proto.HalfStream{Stream: st})
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
