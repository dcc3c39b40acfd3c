//go:build !linux

package qemu

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
)

// hasVirtiofsd: QEMU's virtiofsd is Linux-only; vz has virtiofs built in.
func hasVirtiofsd() bool { return false }

// startVirtiofsd is unavailable off Linux.
func startVirtiofsd(context.Context, string, string, *slog.Logger) (*exec.Cmd, error) {
	return nil, errors.New("virtiofsd runs only on Linux")
}
