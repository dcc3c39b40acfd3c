//go:build !windows

package wsl

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/berth-dev/berth/vm"
)

// New fails: WSL exists on Windows only.
func New(cfg vm.Config, opts Options, log *slog.Logger) (vm.Driver, error) {
	return nil, fmt.Errorf("the WSL driver runs only on Windows, not %s: %w", runtime.GOOS, vm.ErrUnsupported)
}
