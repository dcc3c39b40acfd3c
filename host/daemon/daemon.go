// Package daemon is `berth hostd`: one process per running instance that owns the VM, the
// user-mode network, the agent session, the forwarded docker socket and the control API.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/pubsub"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/localsock"
	"github.com/berth-dev/berth/host/registry"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/netproxy"
	"github.com/berth-dev/berth/vm"
)

// chooseDriver picks the VM driver among those registered (drivers.go); tests replace it.
var chooseDriver = vm.Choose

// Daemon runs one instance.
type Daemon struct {
	inst *store.Instance
	cfg  store.Config
	log  *slog.Logger

	mu        sync.Mutex
	status    api.Status
	events    pubsub.Topic[api.Event]
	history   []api.Event // this run's events, replayed to each new subscriber
	agent     *agentClient
	driver    vm.Driver
	startedAt time.Time

	dockerListener net.Listener
	dockerPipe     bool // the driver serves the engine on a named pipe too (vm.Caps)
	ports          *portManager
	shares         *shares
	registry       *registry.Plan        // the local registry; nil for none
	registryGuest  *proto.RegistryConfig // what the agent gets for it (certificates signed for this run)

	agentSet chan struct{}  // closed and replaced whenever agent changes
	running  chan struct{}  // closed once the instance reached Running
	wg       sync.WaitGroup // every goroutine of the run

	stopOnce  sync.Once
	stopping  chan struct{} // closed by the first stop request
	stopForce bool          // that request's force flag; read after stopping is closed
	vmDone    chan struct{} // closed when the VM is gone and cleaned up

	// Idle pause and guest clock (idle.go, clock.go).
	idleOnce sync.Once
	idleCtl  *idler
	clockCtl clockState

	// hostDiskPaused: the VM is paused on a host I/O error (hostdisk.go). Guarded by mu.
	hostDiskPaused bool
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
		MemoryMiB:     cfg.MemoryMiB(),
		DiskGiB:       cfg.Disk,
		DockerSocket:  inst.Path(store.DockerSock),
		DockerContext: dockerctx.Name(inst.Name),
	}

	ctl, err := localsock.Listen(inst.Path(store.ControlSock))
	if err != nil {
		return err
	}
	srv := d.apiServer()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(localsock.PeerCredListener(ctl, log))
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

// run boots the VM, serves it, and tears everything down. Its steps: prepare (image,
// disks, driver, shares, networks), launch (the VM process), boot (agent, engine, docker
// socket: boot.go), then serve until the VM stops (stop.go).
func (d *Daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var u undo
	defer u.run()
	d.startedAt = time.Now()
	d.mu.Lock()
	d.status.StartedAt = d.startedAt
	d.mu.Unlock()
	d.inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: d.startedAt})

	d.phaseStart(api.PhasePrepare, "checking the guest image and disks")
	drv, err := d.prepare(ctx, &u)
	if err != nil {
		return err
	}
	d.phaseDone(api.PhasePrepare, "image and disks ready")

	d.phaseStart(api.PhaseKernel, "booting the VM")
	exit, err := d.launch(ctx, drv)
	if err != nil {
		return err
	}
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

// undo collects what a run set up, released in reverse order when the run ends.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }

// run is deferred as u.run(): a pointer receiver, so it sees what was added after the
// defer statement.
func (u *undo) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
}

// prepare checks everything a boot needs before anything starts, so that a bad image,
// disk, share or socket path is an immediate, clear error, and builds the VM's driver.
func (d *Daemon) prepare(ctx context.Context, u *undo) (vm.Driver, error) {
	img, err := image.Find(d.cfg)
	if err != nil {
		return nil, err
	}
	// Fail now, not after a minute of booting, if the docker socket's path is taken.
	if err := localsock.ClearPath(d.inst.Path(store.DockerSock)); err != nil {
		return nil, err
	}
	if err := prepareDataDisk(d.inst.Path(store.DataDisk), d.cfg.Disk); err != nil {
		return nil, err
	}
	if d.registry, err = registry.For(d.inst, d.cfg); err != nil {
		return nil, err
	}
	if d.registry != nil {
		if d.registryGuest, err = d.registry.Guest(); err != nil {
			return nil, fmt.Errorf("the local registry's certificates: %w", err)
		}
	}
	// A CA file that is missing or holds no certificate fails now (engine_config.go).
	if _, err := d.engineConfig(); err != nil {
		return nil, err
	}
	runDir := d.inst.Path(store.RuntimeDir)
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, err
	}
	// Only sockets of this run live there (QMP, agent port, virtiofsd); their servers do not
	// all remove them, so the directory is emptied when the run ends.
	u.add(func() { clearDir(runDir) })

	drvReg, err := chooseDriver(vm.Config{Arch: d.cfg.Arch, Accel: d.cfg.Accel})
	if err != nil {
		return nil, err
	}
	d.dockerPipe = drvReg.Caps.DockerPipe
	vmShares, err := d.prepareShares(drvReg.Caps)
	if err != nil {
		return nil, err
	}
	nics, cmdline, err := d.attachNetworks(ctx, drvReg.Caps, u)
	if err != nil {
		return nil, err
	}
	vmCfg := vm.Config{
		Name:      d.inst.Name,
		Arch:      d.cfg.Arch,
		CPUs:      d.cfg.CPUs,
		MemoryMiB: uint64(d.cfg.MemoryMiB()),
		Kernel:    img.Kernel,
		Initrd:    img.Initrd,
		CmdLine:   "loglevel=5 panic=-1 " + proto.FlagListeners + "=" + d.cfg.PortListeners + cmdline,
		Disks: []vm.Disk{
			{Path: img.Root, ReadOnly: true, ID: "berth-root"},
			{Path: d.inst.Path(store.DataDisk), ID: "berth-data"},
		},
		NICs:       nics,
		Shares:     vmShares,
		Agent:      vm.AgentChannel{VsockPort: proto.VsockPort, SerialName: proto.SerialName},
		ConsoleLog: d.inst.Path(store.ConsoleLog),
		StateDir:   d.inst.Dir,
		ImageDir:   img.Dir,
		RuntimeDir: runDir,
		Accel:      d.cfg.Accel,
	}
	// A fresh console log per boot keeps `berth logs console` about this boot.
	os.Remove(vmCfg.ConsoleLog)
	drv, err := drvReg.New(vmCfg, d.log.With("component", "vm", "driver", drvReg.Name))
	if err != nil {
		return nil, err
	}
	if a, ok := drv.(interface{ Accel() string }); ok {
		d.mu.Lock()
		d.status.Accel = a.Accel()
		d.mu.Unlock()
	}
	return drv, nil
}

// attachNetworks starts netproxy for a driver that takes a datagram NIC, and attaches a
// cluster member's second NIC (cluster.go); it returns the NICs and the kernel command
// line flags they need.
func (d *Daemon) attachNetworks(ctx context.Context, caps vm.Caps, u *undo) ([]vm.NIC, string, error) {
	var nics []vm.NIC
	if caps.Network == vm.NetworkDatagram {
		netCfg := netproxy.DefaultConfig()
		network, err := netproxy.New(netCfg, d.log.With("component", "netproxy"))
		if err != nil {
			return nil, "", fmt.Errorf("failed to start the network: %w", err)
		}
		u.add(func() { network.Close() })
		// The VM's end stays open until the VM is gone: vz reads it for the VM's life.
		nicFile, err := network.AttachDatagram(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("failed to attach the network: %w", err)
		}
		u.add(func() { nicFile.Close() })
		nics = []vm.NIC{{MAC: netCfg.GuestMAC, Conn: nicFile}}
	}
	clusterNet, err := d.attachCluster(ctx, caps)
	if err != nil {
		return nil, "", err
	}
	u.add(clusterNet.close)
	return append(nics, clusterNet.nics()...), clusterNet.cmdline(), nil
}

// launch starts the VM and the watches that live as long as it does.
func (d *Daemon) launch(ctx context.Context, drv vm.Driver) (*vmExit, error) {
	exitCh, err := drv.Start(ctx)
	if err != nil {
		return nil, err
	}
	exit := watchExit(exitCh)
	d.mu.Lock()
	d.driver = drv
	d.mu.Unlock()
	// A full host disk pauses the VM (QEMU werror=enospc): show it, resume when there is room.
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.watchHostDisk(ctx, drv)
	}()
	go func() {
		defer d.wg.Done()
		d.trimMemory(ctx)
	}()
	d.inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: d.startedAt})
	return exit, nil
}
