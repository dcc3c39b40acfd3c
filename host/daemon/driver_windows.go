package daemon

import (
	"log/slog"
	"net"
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

// platformDockerListener serves the engine on a named pipe (\\.\pipe\berth-<name>, only the
// current user may open it), which the Windows docker CLI uses; the unix socket stays for
// WSL-side and cross-platform tools.
func platformDockerListener(instance string) (net.Listener, string, error) {
	path, err := wsl.PipePath("berth-" + instance)
	if err != nil {
		return nil, "", err
	}
	ln, err := wsl.ListenDockerPipe(path)
	if err != nil {
		return nil, "", err
	}
	return ln, wsl.DockerHost(path), nil
}
