//go:build darwin && cgo

package vz

import vzlib "github.com/Code-Hex/vz/v3"

// rosettaAvailability asks the framework (macOS 13+; older reports not supported).
func rosettaAvailability() Rosetta {
	switch vzlib.LinuxRosettaDirectoryShareAvailability() {
	case vzlib.LinuxRosettaAvailabilityInstalled:
		return RosettaInstalled
	case vzlib.LinuxRosettaAvailabilityNotInstalled:
		return RosettaNotInstalled
	default:
		return RosettaUnsupported
	}
}

func newRosettaShare() (vzlib.DirectoryShare, error) {
	return vzlib.NewLinuxRosettaDirectoryShare()
}
