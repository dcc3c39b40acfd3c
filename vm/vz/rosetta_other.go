//go:build darwin && cgo && !arm64

package vz

import (
	"errors"

	vzlib "github.com/Code-Hex/vz/v3"
)

// Rosetta for Linux exists on Apple silicon only; vz declares its API for arm64 only.
func rosettaAvailability() Rosetta { return RosettaUnsupported }

func newRosettaShare() (vzlib.DirectoryShare, error) {
	return nil, errors.New("Rosetta is available on Apple silicon only")
}
