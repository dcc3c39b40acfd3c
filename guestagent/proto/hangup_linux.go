package proto

import (
	"net"

	"golang.org/x/sys/unix"
)

// waitHangup blocks until the peer of c has closed the connection entirely (POLLHUP), or c
// is closed, and reports whether it was a hangup. After a peer's half-close the socket
// stays readable (EOF) for good, so only a hangup tells that a client that half-closed (a
// `docker exec -i` whose stdin ended) has since gone away. The netpoller is
// edge-triggered: the callback runs again when the hangup arrives. Only unix sockets say
// this; for others it returns false when c is closed.
func waitHangup(c HalfCloser) bool {
	// A connection seen through a filter (host/dockerproxy) is watched underneath.
	if w, ok := c.(interface{ NetConn() net.Conn }); ok {
		if nc, ok := w.NetConn().(HalfCloser); ok {
			c = nc
		}
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return false
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	hup := false
	err = raw.Read(func(fd uintptr) bool {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 && pfd[0].Revents&unix.POLLHUP != 0 {
			hup = true
			return true
		}
		return false
	})
	return err == nil && hup
}
