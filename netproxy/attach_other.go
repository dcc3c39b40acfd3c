//go:build !darwin && !linux

package netproxy

import (
	"context"
	"errors"
	"os"
	"runtime"
)

// AttachDatagram is only available on darwin and linux (unix datagram socketpairs); WSL2 on
// Windows brings its own network.
func (n *Network) AttachDatagram(ctx context.Context) (*os.File, error) {
	return nil, errors.New("netproxy: datagram VM link is not supported on " + runtime.GOOS)
}
