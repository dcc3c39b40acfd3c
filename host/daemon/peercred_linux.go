package daemon

import (
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerCredListener drops connections from other users. The socket is 0600 in a 0700
// directory already; this also holds if someone loosens those modes.
func peerCredListener(ln net.Listener, log *slog.Logger) net.Listener {
	return &credListener{Listener: ln, log: log}
}

type credListener struct {
	net.Listener
	log *slog.Logger
}

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
		var cred *unix.Ucred
		var cerr error
		raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
		if cerr != nil || (cred.Uid != uint32(os.Getuid()) && cred.Uid != 0) {
			l.log.Warn("rejected control connection from another user", "uid", cred)
			c.Close()
			continue
		}
		return c, nil
	}
}
