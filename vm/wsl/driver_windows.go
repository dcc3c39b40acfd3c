//go:build windows

package wsl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/Microsoft/go-winio"
	"github.com/Microsoft/go-winio/pkg/guid"
	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/berth-dev/berth/vm"
)

const (
	lxssKey          = `Software\Microsoft\Windows\CurrentVersion\Lxss`
	computeSystemKey = `SOFTWARE\Microsoft\Windows NT\CurrentVersion\HostComputeService\VolatileStore\ComputeSystem`
)

// Driver runs one instance as a WSL2 distribution.
type Driver struct {
	plan  Plan
	agent []string
	log   *slog.Logger

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool
	vmID     *guid.GUID // cached utility VM id
}

var _ vm.Driver = (*Driver)(nil)

// New checks cfg and opts; nothing is started.
func New(cfg vm.Config, opts Options, log *slog.Logger) (vm.Driver, error) {
	if log == nil {
		log = slog.Default()
	}
	plan, err := BuildPlan(cfg, opts, runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath(plan.WSLExe); err != nil {
		return nil, fmt.Errorf("WSL is not installed (%s not found; run `wsl --install --no-distribution`): %w", plan.WSLExe, err)
	}
	log = log.With("driver", "wsl", "distro", plan.Distro)
	for _, n := range plan.Notes {
		log.Info(n)
	}
	return &Driver{plan: plan, agent: opts.AgentCommand, log: log}, nil
}

// command prepares wsl.exe without a console window (hostd runs detached) and with UTF-8
// output where the installed WSL supports it.
func (d *Driver) command(args ...string) *exec.Cmd {
	return d.prepare(exec.Command(d.plan.WSLExe, args...))
}

func (d *Driver) commandContext(ctx context.Context, args ...string) *exec.Cmd {
	return d.prepare(exec.CommandContext(ctx, d.plan.WSLExe, args...))
}

func (d *Driver) prepare(cmd *exec.Cmd) *exec.Cmd {
	cmd.Env = append(os.Environ(), "WSL_UTF8=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{HideWindow: true, CreationFlags: windows.CREATE_NO_WINDOW}
	return cmd
}

func (d *Driver) wsl(ctx context.Context, args ...string) (string, error) {
	out, err := d.commandContext(ctx, args...).CombinedOutput()
	text := strings.TrimSpace(DecodeOutput(out))
	if err != nil {
		return text, fmt.Errorf("wsl.exe %s: %w: %s", strings.Join(args, " "), err, text)
	}
	return text, nil
}

// distroID returns the distribution's GUID from HKCU\...\Lxss, or "" if it is not registered.
func distroID(name string) (string, error) {
	root, err := registry.OpenKey(registry.CURRENT_USER, lxssKey, registry.READ)
	if errors.Is(err, registry.ErrNotExist) {
		return "", nil // no distribution at all
	}
	if err != nil {
		return "", fmt.Errorf("opening HKCU\\%s: %w", lxssKey, err)
	}
	defer root.Close()
	ids, err := root.ReadSubKeyNames(-1)
	if err != nil {
		return "", fmt.Errorf("reading HKCU\\%s: %w", lxssKey, err)
	}
	for _, id := range ids {
		k, err := registry.OpenKey(root, id, registry.QUERY_VALUE)
		if err != nil {
			continue
		}
		dn, _, err := k.GetStringValue("DistributionName")
		k.Close()
		if err == nil && strings.EqualFold(dn, name) {
			return id, nil
		}
	}
	return "", nil
}

// Start imports the distribution on first use, starts the agent in it and mounts the shares.
// The channel reports the exit of the wsl.exe process that runs the agent.
func (d *Driver) Start(ctx context.Context) (<-chan error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd != nil {
		select {
		case <-d.done: // the previous run is over; start again
		default:
			return nil, errors.New("wsl: already started")
		}
	}
	id, err := distroID(d.plan.Distro)
	if err != nil {
		return nil, err
	}
	if id == "" {
		if d.plan.RootfsTar == "" {
			return nil, fmt.Errorf("wsl: distribution %s does not exist and no root tarball was given", d.plan.Distro)
		}
		if err := os.MkdirAll(d.plan.InstallDir, 0o700); err != nil {
			return nil, err
		}
		d.log.Info("importing distribution", "dir", d.plan.InstallDir, "rootfs", d.plan.RootfsTar)
		if _, err := d.wsl(ctx, d.plan.ImportArgs()...); err != nil {
			return nil, err
		}
	} else if _, err := d.wsl(ctx, d.plan.TerminateArgs()...); err != nil {
		// Start from a clean distribution: an agent left by a crashed hostd keeps running
		// in WSL after its wsl.exe is gone.
		d.log.Warn("terminating leftover distribution", "err", err)
	}

	var out io.Writer = io.Discard
	var logFile *os.File
	if d.plan.ConsoleLog != "" {
		logFile, err = os.OpenFile(d.plan.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("console log: %w", err)
		}
		fmt.Fprintf(logFile, "--- berth: starting agent in WSL distribution %s at %s\n", d.plan.Distro, time.Now().Format(time.RFC3339))
		out = logFile
	}
	cmd := d.command(d.plan.AgentArgs(d.agent)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("wsl: starting the agent: %w", err)
	}
	exit := make(chan error, 1)
	done := make(chan struct{})
	d.cmd, d.done, d.stopping, d.vmID = cmd, done, false, nil
	go func() {
		err := cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		d.mu.Lock()
		stopping := d.stopping
		d.mu.Unlock()
		switch {
		case stopping || err == nil:
			exit <- nil
		default:
			exit <- fmt.Errorf("wsl: the agent's wsl.exe exited: %w", err)
		}
		close(done)
	}()

	// The running agent keeps the distribution alive, so the mounts made now stay (all
	// processes of a distribution share its mount namespace).
	for _, m := range d.plan.Mounts {
		for _, args := range d.plan.MountArgs(m) {
			if _, err := d.wsl(ctx, args...); err != nil {
				d.stopLocked()
				d.cmd = nil // the exit goroutine reports into the dropped channel
				return nil, fmt.Errorf("wsl: share %q: %w", m.Tag, err)
			}
		}
	}
	d.log.Info("agent started", "pid", cmd.Process.Pid)
	return exit, nil
}

// Stop terminates the distribution (wsl.exe --terminate), with or without force: WSL has
// no power button to press. The graceful path is hostd's shutdown request over the agent
// channel, after which the agent exits on its own and the channel reports nil.
func (d *Driver) Stop(ctx context.Context, force bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return errors.New("wsl: not started")
	}
	select {
	case <-d.done:
		return nil
	default:
	}
	d.stopping = true
	if _, err := d.wsl(ctx, d.plan.TerminateArgs()...); err != nil {
		d.log.Warn("terminate failed, killing wsl.exe", "err", err)
		if kerr := d.cmd.Process.Kill(); kerr != nil {
			return err
		}
	}
	return nil
}

func (d *Driver) stopLocked() {
	d.stopping = true
	if _, err := d.wsl(context.Background(), d.plan.TerminateArgs()...); err != nil {
		d.log.Warn("terminate", "err", err)
	}
	_ = d.cmd.Process.Kill()
}

// DialAgent connects to the agent's vsock port in WSL's utility VM over a Hyper-V socket.
// No GuestCommunicationServices registration is needed to dial into a guest.
func (d *Driver) DialAgent(ctx context.Context) (net.Conn, error) {
	d.mu.Lock()
	cached := d.vmID
	started := d.cmd != nil
	d.mu.Unlock()
	if !started {
		return nil, errors.New("wsl: not started")
	}
	svc := winio.VsockServiceID(d.plan.VsockPort)
	if cached != nil {
		conn, err := winio.Dial(ctx, &winio.HvsockAddr{VMID: *cached, ServiceID: svc})
		if err == nil {
			return conn, nil
		}
		d.log.Debug("dial with cached VM id failed, looking it up again", "err", err)
	}
	id, lookupErr := d.lookupVMID(ctx)
	if lookupErr == nil {
		conn, err := winio.Dial(ctx, &winio.HvsockAddr{VMID: id, ServiceID: svc})
		if err != nil {
			return nil, fmt.Errorf("wsl: dial hvsock %s port %d: %w", id, d.plan.VsockPort, err)
		}
		d.setVMID(id)
		return conn, nil
	}
	d.log.Debug("VM id from wslhost.exe not found, trying compute systems", "err", lookupErr)
	conn, id, err := d.dialComputeSystems(ctx, svc)
	if err != nil {
		return nil, fmt.Errorf("wsl: cannot find WSL's VM: %v; %w", lookupErr, err)
	}
	d.setVMID(id)
	return conn, nil
}

func (d *Driver) setVMID(id guid.GUID) {
	d.mu.Lock()
	d.vmID = &id
	d.mu.Unlock()
}

// lookupVMID is Lima's method: the distribution's GUID from the registry, then the
// `--vm-id {GUID}` of the wslhost.exe process whose command line names it.
func (d *Driver) lookupVMID(ctx context.Context) (guid.GUID, error) {
	id, err := distroID(d.plan.Distro)
	if err != nil {
		return guid.GUID{}, err
	}
	if id == "" {
		return guid.GUID{}, fmt.Errorf("distribution %s is not registered", d.plan.Distro)
	}
	cmd := exec.CommandContext(ctx, "powershell.exe", PowerShellArgs(WSLHostScript)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{HideWindow: true, CreationFlags: windows.CREATE_NO_WINDOW}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return guid.GUID{}, fmt.Errorf("listing wslhost.exe processes: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	lines, err := ParseProcessCommandLines(out)
	if err != nil {
		return guid.GUID{}, err
	}
	vmID, err := FindVMID(lines, id)
	if err != nil {
		return guid.GUID{}, err
	}
	return guid.FromString(vmID)
}

// dialComputeSystems tries every running Hyper-V compute system (Rancher Desktop's
// method) and keeps the first that accepts a connection on the agent's port.
func (d *Driver) dialComputeSystems(ctx context.Context, svc guid.GUID) (net.Conn, guid.GUID, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, computeSystemKey, registry.ENUMERATE_SUB_KEYS)
	if err != nil {
		return nil, guid.GUID{}, fmt.Errorf("opening HKLM\\%s: %w", computeSystemKey, err)
	}
	names, err := k.ReadSubKeyNames(-1)
	k.Close()
	if err != nil {
		return nil, guid.GUID{}, err
	}
	var errs []error
	for _, n := range names {
		if !GUIDPattern.MatchString(n) {
			continue
		}
		id, err := guid.FromString(strings.Trim(n, "{}"))
		if err != nil {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := winio.Dial(dctx, &winio.HvsockAddr{VMID: id, ServiceID: svc})
		cancel()
		if err == nil {
			return conn, id, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", id, err))
	}
	if len(errs) == 0 {
		return nil, guid.GUID{}, errors.New("no running compute system")
	}
	return nil, guid.GUID{}, errors.Join(errs...)
}
