package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/vm"
)

// Driver runs one QEMU process.
type Driver struct {
	cfg   vm.Config
	accel string
	bin   string
	log   *slog.Logger

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan error

	qmp *qmpMonitor // follows the events monitor (I/O errors) for the VM's life
}

var (
	_ vm.Driver         = (*Driver)(nil)
	_ vm.IOErrorWatcher = (*Driver)(nil)
)

// New checks the config and finds QEMU and an accelerator.
func New(cfg vm.Config, log *slog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	name, err := Binary(cfg.Arch)
	if err != nil {
		return nil, err
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s not found: install QEMU (Debian/Ubuntu: apt-get install %s; macOS: brew install qemu): %w", name, debianPackage(cfg.Arch), err)
	}
	accel, err := vm.ChooseAccel(ProbeHost(), cfg.Arch, cfg.Accel)
	if err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg, accel: accel, bin: bin, log: log, qmp: newQMPMonitor(cfg.Disks, log)}, nil
}

func debianPackage(arch string) string {
	if arch == "arm64" {
		return "qemu-system-arm"
	}
	return "qemu-system-x86"
}

// Accel is the accelerator in use.
func (d *Driver) Accel() string { return d.accel }

// ProbeHost reads what accelerator choice depends on from this machine.
func ProbeHost() vm.Host {
	h := vm.Host{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		h.CPUInfo = string(b)
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		h.KVMUsable = true
	}
	return h
}

// Start launches QEMU. The returned channel gets QEMU's exit.
func (d *Driver) Start(ctx context.Context) (<-chan error, error) {
	args, err := Args(d.cfg, d.accel)
	if err != nil {
		return nil, err
	}
	for _, s := range []string{qmpSocket, qmpEventsSocket, agentSocket} {
		os.Remove(filepath.Join(d.cfg.RuntimeDir, s))
	}
	// The virtiofs shares' servers run before QEMU connects to them and end with it.
	fsd, err := d.startShareServers(ctx)
	if err != nil {
		return nil, err
	}
	stopShareServers := func() {
		for _, c := range fsd {
			c.Process.Kill()
		}
	}
	cmd := exec.Command(d.bin, args...)
	if WrapCommand != nil {
		// The wrapper keeps file descriptors 3.. (the NICs) and Pdeathsig across its execve.
		if cmd, err = WrapCommand(append([]string{d.bin}, args...)); err != nil {
			stopShareServers()
			return nil, err
		}
	}
	for _, n := range d.cfg.NICs {
		cmd.ExtraFiles = append(cmd.ExtraFiles, n.Conn)
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	cmd.SysProcAttr = sysProcAttr()
	d.log.Info("starting qemu", "accel", d.accel, "guarded", WrapCommand != nil, "cmd", d.bin+" "+strings.Join(args, " "))
	exit := make(chan error, 1)
	started := make(chan error, 1)
	gone := make(chan struct{}) // closed when QEMU has exited
	go func() {
		// Pdeathsig fires when the thread that forked QEMU exits, not the process, so that
		// thread is pinned for the VM's whole life (golang/go#27505).
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("failed to start %s: %w", d.bin, err)
			return
		}
		started <- nil
		err := cmd.Wait()
		stopShareServers()
		close(gone)
		if err != nil {
			if msg := strings.TrimSpace(stderr.String()); msg != "" {
				err = fmt.Errorf("qemu exited: %w: %s", err, msg)
			} else {
				err = fmt.Errorf("qemu exited: %w", err)
			}
		}
		exit <- err
	}()
	if err := <-started; err != nil {
		stopShareServers()
		return nil, err
	}
	d.mu.Lock()
	d.cmd, d.exit = cmd, exit
	d.mu.Unlock()
	go d.qmp.run(filepath.Join(d.cfg.RuntimeDir, qmpEventsSocket), gone)
	return exit, nil
}

// startShareServers starts a virtiofsd for each virtiofs share.
func (d *Driver) startShareServers(ctx context.Context) ([]*exec.Cmd, error) {
	var cmds []*exec.Cmd
	for i, s := range d.cfg.Shares {
		if s.Device != vm.ShareVirtiofs {
			continue
		}
		cmd, err := startVirtiofsd(ctx, filepath.Clean(s.HostPath), virtiofsSocket(d.cfg, i), d.log.With("component", "virtiofsd"))
		if err != nil {
			for _, c := range cmds {
				c.Process.Kill()
			}
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// Stop asks the guest to power off through ACPI or, with force, quits QEMU at once.
func (d *Driver) Stop(ctx context.Context, force bool) error {
	d.mu.Lock()
	cmd := d.cmd
	d.mu.Unlock()
	if cmd == nil {
		return errors.New("vm not started")
	}
	qmp := filepath.Join(d.cfg.RuntimeDir, qmpSocket)
	if !force {
		return qmpCommand(ctx, qmp, "system_powerdown")
	}
	if err := qmpCommand(ctx, qmp, "quit"); err != nil {
		d.log.Warn("QMP quit failed; killing qemu", "err", err)
		return cmd.Process.Kill()
	}
	return nil
}

// DialAgent connects to QEMU's end of the virtio-serial agent port. QEMU creates the
// socket shortly after it starts, so the dial is retried until ctx ends.
func (d *Driver) DialAgent(ctx context.Context) (net.Conn, error) {
	path := filepath.Join(d.cfg.RuntimeDir, agentSocket)
	for {
		var dl net.Dialer
		c, err := dl.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("failed to connect to the agent port %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IOErrors reports BLOCK_IO_ERROR events: with QEMU's default werror=enospc a full host
// file system pauses the VM (vm.IOErrorWatcher).
func (d *Driver) IOErrors() <-chan vm.IOError { return d.qmp.IOErrors() }

// Resume continues a VM paused on an I/O error (QMP cont); the failed requests are retried.
func (d *Driver) Resume(ctx context.Context) error { return d.qmp.Resume(ctx) }

// limitedWriter keeps the first n bytes: QEMU's error is at the start of its stderr.
type limitedWriter struct {
	w interface{ WriteString(string) (int, error) }
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.WriteString(string(p[:k]))
		l.n -= k
	}
	return len(p), nil
}
