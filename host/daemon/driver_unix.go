//go:build !windows

package daemon

import (
	"log/slog"
	"net"

	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
	"github.com/berth-dev/berth/vm/qemu"
	"github.com/berth-dev/berth/vm/vz"
)

// platformNetwork: every driver here attaches the guest NIC to netproxy.
const platformNetwork = true

// newPlatformDriver picks Virtualization.framework on macOS (unless the user forced a QEMU
// accelerator) and QEMU everywhere else.
func newPlatformDriver(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	if useVZ(cfg) {
		return vz.New(cfg, log)
	}
	return qemu.New(cfg, log)
}

// platformDriverName names the driver newPlatformDriver will pick.
func platformDriverName(cfg store.Config) string {
	if useVZ(vm.Config{Arch: cfg.Arch, Accel: cfg.Accel}) {
		return "vz"
	}
	return "qemu"
}

// platformDockerListener: the unix socket is all the docker CLI needs here.
func platformDockerListener(string) (net.Listener, string, error) { return nil, "", nil }
