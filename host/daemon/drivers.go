package daemon

// The VM drivers berth is built with. Each registers itself (vm.Register) in a file built
// only where it runs, so these imports cost nothing elsewhere; adding a driver is one line.
import (
	_ "github.com/berth-dev/berth/vm/qemu"
	_ "github.com/berth-dev/berth/vm/vz"
	_ "github.com/berth-dev/berth/vm/wsl"
)
