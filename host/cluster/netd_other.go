//go:build !darwin && !linux

package cluster

import (
	"context"
	"log/slog"

	"github.com/berth-dev/berth/netproxy/clusternet"
)

func lockFile(string) (func(), error) { return nil, clusternet.ErrUnsupported }

// RunNetd is unsupported here: WSL2 brings its own network (docs/cluster.md).
func RunNetd(context.Context, string, *slog.Logger) error { return clusternet.ErrUnsupported }

// NetdRunning reports none.
func NetdRunning(context.Context, string) int { return 0 }

// NetdStatus fails.
func NetdStatus(context.Context, string) (clusternet.Reply, error) {
	return clusternet.Reply{}, clusternet.ErrUnsupported
}

// EnsureNetd fails.
func EnsureNetd(context.Context, string) (string, error) { return "", clusternet.ErrUnsupported }

// StopNetd has nothing to stop.
func StopNetd(context.Context, string) error { return nil }
