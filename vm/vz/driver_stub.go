//go:build !darwin || !cgo

package vz

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/berth-dev/berth/vm"
)

// New fails: the vz driver needs macOS and cgo (Virtualization.framework is an
// Objective-C framework reached through cgo).
func New(cfg vm.Config, log *slog.Logger) (vm.Driver, error) {
	if runtime.GOOS == "darwin" {
		return nil, fmt.Errorf("berth was built without cgo (CGO_ENABLED=0); the vz driver needs it: %w", vm.ErrUnsupported)
	}
	return nil, fmt.Errorf("the vz driver runs only on macOS, not %s: %w", runtime.GOOS, vm.ErrUnsupported)
}
