//go:build !linux

package fileshare

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
)

// HasVirtiofsd: QEMU's virtiofsd is Linux-only; vz has virtiofs built in.
func HasVirtiofsd() bool { return false }

// StartVirtiofsd is unavailable off Linux.
func StartVirtiofsd(context.Context, string, string, *slog.Logger) (*exec.Cmd, error) {
	return nil, errors.New("virtiofsd runs only on Linux")
}
