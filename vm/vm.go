// Package vm is the boundary between berth and a hypervisor. The types here are plain Go
// values that compile on every platform; each driver (vm/qemu, vm/vz, vm/wsl) turns a Config
// into a running machine.
package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
)

// Config describes one virtual machine. Drivers reject what they cannot do instead of
// silently ignoring it.
type Config struct {
	Name      string // instance name, used in logs and process titles
	Arch      string // guest architecture: "amd64" or "arm64"
	CPUs      int
	MemoryMiB uint64

	Kernel  string // uncompressed Image on arm64 (vz requires it); bzImage on amd64
	Initrd  string
	CmdLine string

	Disks  []Disk
	NICs   []NIC
	Shares []Share

	// Agent is how the host reaches berth-agent in the guest.
	Agent AgentChannel

	// ConsoleLog receives the guest's serial console.
	ConsoleLog string
	// StateDir is the instance's directory; a driver keeps files of its own (the WSL
	// distribution) under StateDir/<driver name>.
	StateDir string
	// ImageDir holds the guest image (kernel, initrd, root.img and, for WSL, rootfs.tar).
	ImageDir string
	// RuntimeDir holds driver sockets (QMP, agent channel). It must be short: macOS unix
	// socket paths are limited to 104 bytes.
	RuntimeDir string

	// Accel forces an accelerator ("kvm", "hvf", "tcg"; "whpx" for WSL2); empty picks one.
	Accel string
}

// Disk is a raw disk image attached as a virtio block device.
type Disk struct {
	Path     string
	ReadOnly bool
	// ID is exposed to the guest as the block device serial so the agent finds disks by
	// name, not by probe order.
	ID string
}

// NIC is a virtio-net device whose frames travel over a connected datagram socket, one
// ethernet frame per datagram. That is what vz's file-handle attachment and QEMU's
// `-netdev dgram` both speak, so netproxy serves every driver the same way.
type NIC struct {
	MAC  string
	Conn *os.File
}

// Share is a host directory exported to the guest under Tag.
type Share struct {
	Tag      string
	HostPath string
	ReadOnly bool
	// Device is how the share reaches the guest (ShareVirtiofs, Share9P, ShareDrvfs), as
	// the driver's Caps.ShareDevice chose it.
	Device string
}

// AgentChannel says how the agent is reached. Drivers use vsock where the hypervisor offers
// it and a virtio-serial port otherwise.
type AgentChannel struct {
	VsockPort  uint32 // guest vsock port the agent listens on
	SerialName string // virtio-serial port name the agent opens when there is no vsock
}

// Driver runs one VM. Methods are called from a single goroutine by the host daemon.
type Driver interface {
	// Start boots the VM and returns a channel that receives exactly one value when the VM
	// exits: nil for a clean poweroff, an error otherwise. Start does not wait for the guest.
	Start(ctx context.Context) (<-chan error, error)
	// Stop asks the guest to power off; with force it kills the VM at once. A driver may wait
	// for the guest within ctx (and force it when ctx ends); callers still learn that the VM
	// is gone from Start's channel.
	Stop(ctx context.Context, force bool) error
	// DialAgent opens the byte stream to berth-agent. Over virtio-serial there is one such
	// stream for the VM's life; callers multiplex it.
	DialAgent(ctx context.Context) (net.Conn, error)
}

// IOErrorWatcher is implemented by a Driver that reports the VM pausing on a host I/O
// error, such as the host file system holding a disk image running full, and can resume
// it. The VM keeps the failed requests and retries them on Resume, so nothing the guest
// wrote is lost; resuming while the host is still full only pauses it again.
type IOErrorWatcher interface {
	// IOErrors receives one value per I/O error the hypervisor reports, for the VM's life.
	// The channel is never closed; a slow reader loses the oldest values, not the newest.
	IOErrors() <-chan IOError
	// Resume continues a paused VM; it is harmless when the VM runs.
	Resume(ctx context.Context) error
}

// IOError is a host I/O error on one of the VM's disks.
type IOError struct {
	Device  string // the driver's name for the disk (QEMU: the drive id, "disk1")
	Path    string // the disk image (Config.Disks[].Path), when known
	NoSpace bool   // the host file system is full (ENOSPC)
	Paused  bool   // the VM was paused on it and waits for Resume
	Message string // the host's error text, e.g. "No space left on device"
}

// ErrUnsupported is wrapped by drivers for configuration they cannot honour.
var ErrUnsupported = errors.New("not supported by this driver")

// plainName is what a driver may build file, process and distribution names from. The
// instance-name rule itself (store.ValidName) is stricter.
var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// CheckName refuses a VM name a driver cannot build names from.
func CheckName(name string) error {
	if !plainName.MatchString(name) {
		return fmt.Errorf("invalid VM name %q: letters, digits, '.', '_' and '-' only", name)
	}
	return nil
}

// Validate checks what every driver needs.
func (c *Config) Validate() error {
	if err := CheckName(c.Name); err != nil {
		return err
	}
	switch c.Arch {
	case "amd64", "arm64":
	default:
		return fmt.Errorf("unsupported guest architecture %q (want amd64 or arm64)", c.Arch)
	}
	if c.CPUs < 1 {
		return fmt.Errorf("cpus must be at least 1, got %d", c.CPUs)
	}
	if c.MemoryMiB < 256 {
		return fmt.Errorf("memory must be at least 256 MiB, got %d MiB", c.MemoryMiB)
	}
	for _, f := range []struct{ what, path string }{{"kernel", c.Kernel}, {"initrd", c.Initrd}} {
		if f.path == "" {
			return fmt.Errorf("%s path is empty", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	for _, d := range c.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("disk %q: %w", d.ID, err)
		}
	}
	if c.Agent.VsockPort == 0 && c.Agent.SerialName == "" {
		return errors.New("no agent channel configured")
	}
	return nil
}
