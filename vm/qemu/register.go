//go:build !windows

package qemu

import (
	"log/slog"

	"github.com/berth-dev/berth/vm"
)

// QEMU runs every guest architecture with any accelerator the host has, so it is the
// driver of last resort: any other registered driver that handles a Config wins.
func init() {
	vm.Register(vm.Registration{
		Name:     "qemu",
		Priority: 0,
		Handles:  func(vm.Config) bool { return true },
		Caps:     vm.Caps{Network: vm.NetworkDatagram, ShareDevice: shareDevice},
		New:      func(cfg vm.Config, log *slog.Logger) (vm.Driver, error) { return New(cfg, log) },
	})
}
