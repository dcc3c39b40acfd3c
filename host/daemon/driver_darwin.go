package daemon

import (
	"runtime"

	"github.com/berth-dev/berth/vm"
)

// useVZ: Virtualization.framework runs only guests of the Mac's own architecture;
// `accel: tcg` (or hvf) asks for QEMU instead.
func useVZ(cfg vm.Config) bool {
	return cfg.Arch == runtime.GOARCH && (cfg.Accel == "" || cfg.Accel == "auto")
}
