//go:build !linux && !darwin

package daemon

import (
	"log/slog"
	"net"
)

// peerCredListener: there are no unix-socket peer credentials here (Windows serves the
// engine on a per-user named pipe, whose ACL does the same job).
func peerCredListener(ln net.Listener, _ *slog.Logger) net.Listener { return ln }
