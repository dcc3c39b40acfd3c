package localsock

import (
	"net"

	"golang.org/x/sys/unix"
)

func canWatchHangup(c net.Conn) bool {
	_, ok := c.(*net.UnixConn)
	return ok
}

// hungUp reports whether both directions of the unix socket c are shut: the peer closed
// its end (POLLHUP). A peer's shutdown of its writes alone shuts only c's reads
// (POLLRDHUP). (macOS's poll reports POLLHUP for that half-close too, so there the wait's
// own timeout is the bound.)
func hungUp(c net.Conn) bool {
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}} // POLLHUP and POLLERR are always reported
		n, err := unix.Poll(fds, 0)
		gone = err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0
	})
	return gone
}
