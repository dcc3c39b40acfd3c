//go:build !linux

package guestagent

import (
	"errors"

	"github.com/berth-dev/berth/guestagent/proto"
)

// scanSockDiag is Linux's: elsewhere the listener scan reads /proc/net (the agent runs in a
// Linux guest; other systems only build the package).
func scanSockDiag(loopback bool) ([]proto.Port, error) {
	return nil, errors.ErrUnsupported
}
