//go:build darwin && cgo

package vz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"

	vzlib "github.com/Code-Hex/vz/v3"

	"github.com/berth-dev/berth/vm"
)

// Driver runs one VM with Virtualization.framework. See the package comment for threading.
type Driver struct {
	plan Plan
	log  *slog.Logger

	mu      sync.Mutex
	machine *vzlib.VirtualMachine
	done    chan struct{} // closed once the VM reached Stopped or Error after Start
}

var _ vm.Driver = (*Driver)(nil)

// New checks cfg and maps it onto vz; nothing is started.
func New(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host := Host{
		GOARCH:  runtime.GOARCH,
		Rosetta: rosettaAvailability(),
		Limits: Limits{
			MinCPUs:   vzlib.VirtualMachineConfigurationMinimumAllowedCPUCount(),
			MaxCPUs:   vzlib.VirtualMachineConfigurationMaximumAllowedCPUCount(),
			MinMemory: vzlib.VirtualMachineConfigurationMinimumAllowedMemorySize(),
			MaxMemory: vzlib.VirtualMachineConfigurationMaximumAllowedMemorySize(),
		},
	}
	plan, err := BuildPlan(cfg, host)
	if err != nil {
		return nil, err
	}
	k, err := os.Open(plan.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	err = CheckKernel(k, cfg.Arch)
	k.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", plan.Kernel, err)
	}
	log = log.With("driver", "vz", "vm", cfg.Name)
	for _, n := range plan.Notes {
		log.Warn(n)
	}
	return &Driver{plan: plan, log: log}, nil
}

// configuration turns the plan into a validated VZVirtualMachineConfiguration.
func (d *Driver) configuration() (*vzlib.VirtualMachineConfiguration, error) {
	p := d.plan
	opts := []vzlib.LinuxBootLoaderOption{vzlib.WithCommandLine(p.CmdLine)}
	if p.Initrd != "" {
		opts = append(opts, vzlib.WithInitrd(p.Initrd))
	}
	boot, err := vzlib.NewLinuxBootLoader(p.Kernel, opts...)
	if err != nil {
		return nil, fmt.Errorf("linux boot loader: %w", err)
	}
	conf, err := vzlib.NewVirtualMachineConfiguration(boot, p.CPUs, p.MemoryBytes)
	if err != nil {
		return nil, fmt.Errorf("vm configuration: %w", err)
	}

	var storage []vzlib.StorageDeviceConfiguration
	for _, disk := range p.Disks {
		att, err := vzlib.NewDiskImageStorageDeviceAttachment(disk.Path, disk.ReadOnly)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", disk.Path, err)
		}
		blk, err := vzlib.NewVirtioBlockDeviceConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", disk.Path, err)
		}
		if disk.Identifier != "" {
			// macOS 12.3+. Without it the agent cannot tell the disks apart, so fail.
			if err := blk.SetBlockDeviceIdentifier(disk.Identifier); err != nil {
				return nil, fmt.Errorf("disk %s: block device identifier %q (needs macOS 12.3): %w", disk.Path, disk.Identifier, err)
			}
		}
		storage = append(storage, blk)
	}
	conf.SetStorageDevicesVirtualMachineConfiguration(storage)

	var nics []*vzlib.VirtioNetworkDeviceConfiguration
	for i, n := range p.NICs {
		att, err := vzlib.NewFileHandleNetworkDeviceAttachment(n.Conn)
		if err != nil {
			return nil, fmt.Errorf("nic %d: %w", i, err)
		}
		nic, err := vzlib.NewVirtioNetworkDeviceConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("nic %d: %w", i, err)
		}
		if n.MAC != nil {
			mac, err := vzlib.NewMACAddress(n.MAC)
			if err != nil {
				return nil, fmt.Errorf("nic %d: %w", i, err)
			}
			nic.SetMACAddress(mac)
		}
		nics = append(nics, nic)
	}
	conf.SetNetworkDevicesVirtualMachineConfiguration(nics)

	sock, err := vzlib.NewVirtioSocketDeviceConfiguration()
	if err != nil {
		return nil, fmt.Errorf("vsock device: %w", err)
	}
	conf.SetSocketDevicesVirtualMachineConfiguration([]vzlib.SocketDeviceConfiguration{sock})

	var shares []vzlib.DirectorySharingDeviceConfiguration
	for _, s := range p.Shares {
		fs, err := vzlib.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return nil, fmt.Errorf("share %q: %w", s.Tag, err)
		}
		var share vzlib.DirectoryShare
		if s.Rosetta {
			share, err = newRosettaShare()
		} else {
			var dir *vzlib.SharedDirectory
			dir, err = vzlib.NewSharedDirectory(s.HostPath, s.ReadOnly)
			if err == nil {
				share, err = vzlib.NewSingleDirectoryShare(dir)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("share %q: %w", s.Tag, err)
		}
		fs.SetDirectoryShare(share)
		shares = append(shares, fs)
	}
	conf.SetDirectorySharingDevicesVirtualMachineConfiguration(shares)

	if p.Entropy {
		e, err := vzlib.NewVirtioEntropyDeviceConfiguration()
		if err != nil {
			return nil, fmt.Errorf("entropy device: %w", err)
		}
		conf.SetEntropyDevicesVirtualMachineConfiguration([]*vzlib.VirtioEntropyDeviceConfiguration{e})
	}
	if p.Balloon {
		b, err := vzlib.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
		if err != nil {
			return nil, fmt.Errorf("memory balloon: %w", err)
		}
		conf.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vzlib.MemoryBalloonDeviceConfiguration{b})
	}

	if p.ConsoleLog != "" {
		// Create it 0600 ourselves: the console may show secrets, and vz would use the umask.
		f, err := os.OpenFile(p.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("console log: %w", err)
		}
		f.Close()
		att, err := vzlib.NewFileSerialPortAttachment(p.ConsoleLog, true)
		if err != nil {
			return nil, fmt.Errorf("console log %s: %w", p.ConsoleLog, err)
		}
		serial, err := vzlib.NewVirtioConsoleDeviceSerialPortConfiguration(att)
		if err != nil {
			return nil, fmt.Errorf("serial console: %w", err)
		}
		conf.SetSerialPortsVirtualMachineConfiguration([]*vzlib.VirtioConsoleDeviceSerialPortConfiguration{serial})
	}

	if ok, err := conf.Validate(); !ok || err != nil {
		if err == nil {
			err = errors.New("configuration rejected")
		}
		return nil, fmt.Errorf("vz configuration invalid (is the binary signed with com.apple.security.virtualization?): %w", err)
	}
	return conf, nil
}

// Start builds and boots the VM. The returned channel gets nil when the VM reaches
// VZVirtualMachineStateStopped and an error when it reaches the Error state.
func (d *Driver) Start(ctx context.Context) (<-chan error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.machine != nil {
		select {
		case <-d.done: // the previous VM is gone; build a fresh one
		default:
			return nil, errors.New("vz: VM already started")
		}
	}
	conf, err := d.configuration()
	if err != nil {
		return nil, err
	}
	machine, err := vzlib.NewVirtualMachine(conf)
	if err != nil {
		return nil, fmt.Errorf("vz: new virtual machine: %w", err)
	}
	if !machine.CanStart() {
		return nil, fmt.Errorf("vz: VM cannot start in state %v", machine.State())
	}

	// vz's Start waits for the framework's completion handler; it cannot be cancelled, so
	// run it aside and stop the VM if the caller gave up meanwhile.
	started := make(chan error, 1)
	go func() { started <- machine.Start() }()
	select {
	case err := <-started:
		if err != nil {
			return nil, fmt.Errorf("vz: start: %w", err)
		}
	case <-ctx.Done():
		go func() {
			if err := <-started; err == nil {
				if err := machine.Stop(); err != nil {
					d.log.Error("stopping VM after cancelled start", "err", err)
				}
			}
		}()
		return nil, ctx.Err()
	}

	exit := make(chan error, 1)
	done := make(chan struct{})
	// The state channel is unbounded and fed from creation on, so no transition is lost
	// between Start and this goroutine.
	go func() {
		defer close(done)
		for st := range machine.StateChangedNotify() {
			d.log.Debug("vm state", "state", st.String())
			switch st {
			case vzlib.VirtualMachineStateStopped:
				exit <- nil
				return
			case vzlib.VirtualMachineStateError:
				exit <- errors.New("vz: the virtual machine stopped with an internal error (see the console log)")
				return
			}
		}
		exit <- errors.New("vz: state notifications ended")
	}()
	d.machine, d.done = machine, done
	d.log.Info("vm started", "cpus", d.plan.CPUs, "memoryMiB", d.plan.MemoryBytes>>20)
	return exit, nil
}

func (d *Driver) running() (*vzlib.VirtualMachine, chan struct{}, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.machine == nil {
		return nil, nil, errors.New("vz: VM not started")
	}
	return d.machine, d.done, nil
}

// Stop with force stops the VM at once (VZ stop, macOS 12). Without force it requests a
// guest power-off and waits until the VM stops, ctx is done, or DefaultStopGrace passes
// when ctx has no deadline; then it forces.
func (d *Driver) Stop(ctx context.Context, force bool) error {
	machine, done, err := d.running()
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	default:
	}
	if !force {
		if machine.CanRequestStop() {
			if _, err := machine.RequestStop(); err != nil {
				d.log.Warn("guest stop request failed, forcing", "err", err)
				force = true
			}
		} else {
			force = true
		}
	}
	if !force {
		wait := ctx
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			wait, cancel = context.WithTimeout(ctx, DefaultStopGrace)
			defer cancel()
		}
		select {
		case <-done:
			return nil
		case <-wait.Done():
			d.log.Warn("guest did not power off in time, forcing")
		}
	}
	return forceStop(machine, done)
}

func forceStop(machine *vzlib.VirtualMachine, done chan struct{}) error {
	select {
	case <-done:
		return nil
	default:
	}
	if !machine.CanStop() {
		// Already stopping or stopped; the exit channel will say.
		return nil
	}
	if err := machine.Stop(); err != nil {
		return fmt.Errorf("vz: stop: %w", err)
	}
	return nil
}

// DialAgent connects to the agent's vsock port through the VM's socket device. Only this
// process can do that: macOS has no host-side AF_VSOCK, connections go through the
// framework.
func (d *Driver) DialAgent(ctx context.Context) (net.Conn, error) {
	machine, _, err := d.running()
	if err != nil {
		return nil, err
	}
	devs := machine.SocketDevices()
	if len(devs) == 0 {
		return nil, errors.New("vz: the VM has no socket device")
	}
	type result struct {
		conn *vzlib.VirtioSocketConnection
		err  error
	}
	res := make(chan result, 1)
	go func() {
		c, err := devs[0].Connect(d.plan.VsockPort)
		res <- result{c, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("vz: connect to vsock port %d: %w", d.plan.VsockPort, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-res; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
