package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"
)

// listenUnix listens on path after making sure nothing of someone else's is there: a
// stale socket of ours is removed, but a socket something answers on, or any file that is
// not a socket, is left alone and reported.
func listenUnix(path string) (net.Listener, error) {
	if err := clearSocketPath(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	// The daemon's umask already made it 0600; this guards a caller that changed it.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// clearSocketPath makes path free for a new socket, removing only a stale socket.
func clearSocketPath(path string) error {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case st.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("%s exists and is not a socket; berth will not replace it: move it away and start again", path)
	default:
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("%s is in use by another process; stop it or remove the socket, then start again", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("failed to remove stale socket %s: %w", path, err)
		}
	}
	return nil
}
