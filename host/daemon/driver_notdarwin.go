//go:build !darwin && !windows

package daemon

import "github.com/berth-dev/berth/vm"

func useVZ(vm.Config) bool { return false }
