package vz

import (
	"runtime"

	"github.com/berth-dev/berth/vm"
)

// Virtualization.framework runs guests of the Mac's own architecture; `accel: tcg` (or hvf)
// asks for QEMU instead. Built without cgo, New says that vz needs cgo.
func init() {
	vm.Register(vm.Registration{
		Name:     "vz",
		Priority: 10,
		Handles: func(cfg vm.Config) bool {
			return cfg.Arch == runtime.GOARCH && (cfg.Accel == "" || cfg.Accel == "auto")
		},
		Caps: vm.Caps{
			Network:     vm.NetworkDatagram,
			ShareDevice: func(vm.Share) string { return vm.ShareVirtiofs },
		},
		New: New,
	})
}
