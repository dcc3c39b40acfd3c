//go:build !windows

package localsock

import (
	"errors"
	"net"
)

// ListenPipe fails: named pipes exist on Windows only.
func ListenPipe(name string) (net.Listener, error) {
	return nil, errors.New("named pipes exist only on Windows")
}
