package daemon

import (
	"log/slog"
	"path/filepath"

	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
	"github.com/berth-dev/berth/vm/wsl"
)

// platformNetwork: WSL2 brings its own network, so netproxy is not attached.
const platformNetwork = false

// newPlatformDriver runs the guest as a WSL2 distribution. Disks and NICs are WSL's own.
func newPlatformDriver(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	imgDir := filepath.Dir(cfg.Kernel)
	opts := wsl.Options{
		InstallDir: filepath.Join(filepath.Dir(cfg.ConsoleLog), "wsl"),
		RootfsTar:  filepath.Join(imgDir, "rootfs.tar"),
	}
	cfg.Disks, cfg.NICs = nil, nil
	return wsl.New(cfg, opts, log)
}

// platformDriverName names the driver newPlatformDriver will pick.
func platformDriverName(store.Config) string { return "wsl" }
