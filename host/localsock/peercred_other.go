//go:build !linux && !darwin

package localsock

import (
	"log/slog"
	"net"
)

// PeerCredListener: there are no unix-socket peer credentials here (Windows serves the
// engine on a per-user named pipe, whose ACL does the same job).
func PeerCredListener(ln net.Listener, _ *slog.Logger) net.Listener { return ln }
