package wsl

import (
	"log/slog"
	"path/filepath"

	"github.com/berth-dev/berth/vm"
)

// WSL2 is the only driver on Windows. It brings its own network and disks, shares reach
// the guest as drvfs mounts, and the engine is also served on a named pipe.
func init() {
	vm.Register(vm.Registration{
		Name:     "wsl",
		Priority: 10,
		Handles:  func(vm.Config) bool { return true },
		Caps: vm.Caps{
			Network:     vm.NetworkOwn,
			ShareDevice: func(vm.Share) string { return vm.ShareDrvfs },
			DockerPipe:  true,
		},
		New: func(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
			opts := Options{
				InstallDir: filepath.Join(cfg.StateDir, "wsl"),
				RootfsTar:  filepath.Join(cfg.ImageDir, "rootfs.tar"),
			}
			cfg.Disks, cfg.NICs = nil, nil
			return New(cfg, opts, log)
		},
	})
}
