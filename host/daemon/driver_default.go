//go:build !windows

package daemon

import (
	"log/slog"

	"github.com/berth-dev/berth/vm"
	"github.com/berth-dev/berth/vm/qemu"
)

func newPlatformDriver(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	return qemu.New(cfg, log)
}
