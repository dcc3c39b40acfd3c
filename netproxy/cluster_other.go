//go:build !darwin && !linux

package netproxy

import (
	"errors"
	"os"
	"runtime"
)

// DatagramPair is only available on darwin and linux.
func DatagramPair() (a, b *os.File, err error) {
	return nil, nil, errors.New("netproxy: datagram socketpairs are not supported on " + runtime.GOOS)
}
