// Package localsock owns berth's local endpoints: unix sockets (stale-socket check, 0600,
// peer credentials), the Windows named pipe the engine is served on, and the names of both.
// hostd, the installer and the CLI use it; nothing else listens on or names an endpoint.
package localsock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"time"
)

// Listen listens on path after making sure nothing of someone else's is there: a
// stale socket of ours is removed, but a socket something answers on, or any file that is
// not a socket, is left alone and reported.
func Listen(path string) (net.Listener, error) {
	if err := ClearPath(path); err != nil {
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

// ClearPath makes path free for a new socket, removing only a stale socket.
func ClearPath(path string) error {
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

// DockerPipeName is the named pipe an instance's engine is served on (Windows).
func DockerPipeName(instance string) string { return "berth-" + instance }

// DockerEndpoint is the DOCKER_HOST of an instance's engine on goos: its named pipe on
// Windows, its unix socket (socketPath) elsewhere.
func DockerEndpoint(goos, instance, socketPath string) (string, error) {
	if goos == "windows" {
		p, err := PipePath(DockerPipeName(instance))
		if err != nil {
			return "", err
		}
		return DockerHost(p), nil
	}
	return "unix://" + socketPath, nil
}

// DialTimeout bounds connecting to a local socket (a server too busy to accept).
const DialTimeout = 10 * time.Second

// Dial connects to the unix socket at path, within ctx and DialTimeout.
func Dial(ctx context.Context, path string) (net.Conn, error) {
	d := net.Dialer{Timeout: DialTimeout}
	return d.DialContext(ctx, "unix", path)
}

// HTTPClient speaks HTTP to the server on the unix socket at path; URLs take any host
// ("http://berth/v1/status"). It has no overall timeout: callers bound each request
// with its context, since some (events, logs) stream for as long as they are read.
func HTTPClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return Dial(ctx, path) },
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}
}
