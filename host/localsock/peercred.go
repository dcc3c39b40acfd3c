//go:build linux || darwin

package localsock

import (
	"log/slog"
	"net"
	"os"
)

// PeerCredListener drops connections from other users: the peer's uid (SO_PEERCRED on
// Linux, LOCAL_PEERCRED — getpeereid — on macOS) must be ours, or root's, who can reach
// our files anyway. The sockets are 0600 in a 0700 directory already; this also holds if
// someone loosens those modes. It guards the control socket and the docker socket.
func PeerCredListener(ln net.Listener, log *slog.Logger) net.Listener {
	return &credListener{Listener: ln, log: log, uid: uint32(os.Getuid())}
}

type credListener struct {
	net.Listener
	log *slog.Logger
	uid uint32
}

// peerAllowed says whether a peer with uid may talk to a daemon running as self.
func peerAllowed(uid, self uint32) bool { return uid == self || uid == 0 }

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			return c, nil
		}
		raw, err := uc.SyscallConn()
		if err != nil {
			c.Close()
			continue
		}
		var uid uint32
		var uerr error
		if err := raw.Control(func(fd uintptr) { uid, uerr = peerUID(int(fd)) }); err != nil {
			uerr = err
		}
		if uerr != nil {
			l.log.Warn("rejected a connection whose peer is unknown", "socket", l.Addr().String(), "err", uerr)
			c.Close()
			continue
		}
		if !peerAllowed(uid, l.uid) {
			l.log.Warn("rejected a connection from another user", "socket", l.Addr().String(), "uid", uid)
			c.Close()
			continue
		}
		return c, nil
	}
}
