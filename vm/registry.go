package vm

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Each driver package registers itself (in an init function of a file built only where the
// driver can run) and the host daemon chooses among those registered: adding a driver
// touches vm/ and one import line in host/daemon/drivers.go, and no code outside vm/
// compares driver names.

// NetworkMode says how a driver's guest is networked.
type NetworkMode int

const (
	// NetworkDatagram: the VM has a virtio-net NIC whose frames travel over a connected
	// datagram socket (Config.NICs), which netproxy serves.
	NetworkDatagram NetworkMode = iota
	// NetworkOwn: the platform brings its own network (WSL2); no NIC is attached.
	NetworkOwn
)

// Share devices: how a share reaches the guest. The names are what the guest mounts
// (proto.Mount.FSType).
const (
	ShareVirtiofs = "virtiofs"
	Share9P       = "9p"
	ShareDrvfs    = "drvfs"
)

// Caps is what the host daemon must know about a driver to set up around its VM.
type Caps struct {
	Network NetworkMode
	// ShareDevice picks the device a share travels on; the driver serves that device
	// itself (QEMU starts virtiofsd for a virtiofs share).
	ShareDevice func(s Share) string
	// DockerPipe: the host's docker CLI reaches the engine through a named pipe (Windows),
	// served beside berth's unix socket.
	DockerPipe bool
}

// Registration is one driver.
type Registration struct {
	Name string // "qemu", "vz", "wsl": in logs, messages and `berth status`
	// Priority orders the drivers that can run a Config: the highest that Handles it wins.
	Priority int
	// Handles reports whether the driver runs cfg on this host (architecture, accelerator).
	Handles func(cfg Config) bool
	Caps    Caps
	New     func(cfg Config, log *slog.Logger) (Driver, error)
}

var (
	regMu   sync.Mutex
	drivers []Registration
)

// Register adds a driver. It panics on a duplicate name, which is a programming error.
func Register(r Registration) {
	regMu.Lock()
	defer regMu.Unlock()
	if r.Name == "" || r.New == nil || r.Handles == nil || r.Caps.ShareDevice == nil {
		panic("vm.Register: incomplete registration " + r.Name)
	}
	for _, d := range drivers {
		if d.Name == r.Name {
			panic("vm.Register: driver " + r.Name + " registered twice")
		}
	}
	drivers = append(drivers, r)
	slices.SortStableFunc(drivers, func(a, b Registration) int { return b.Priority - a.Priority })
}

// Choose returns the driver that runs cfg on this host.
func Choose(cfg Config) (Registration, error) {
	regMu.Lock()
	defer regMu.Unlock()
	if len(drivers) == 0 {
		return Registration{}, errors.New("no VM driver is built into this berth")
	}
	names := make([]string, 0, len(drivers))
	for _, d := range drivers {
		if d.Handles(cfg) {
			return d, nil
		}
		names = append(names, d.Name)
	}
	return Registration{}, fmt.Errorf("no VM driver here runs a %s guest with accelerator %q (drivers: %s)", cfg.Arch, cfg.Accel, strings.Join(names, ", "))
}
