//go:build darwin && berth_typecheck_fixture

package badvz

import vzlib "github.com/Code-Hex/vz/v3"

// Rosetta for Linux is declared for arm64 only, so this file is wrong on darwin/amd64 alone.
func Rosetta() bool {
	return vzlib.LinuxRosettaDirectoryShareAvailability() == vzlib.LinuxRosettaAvailabilityInstalled // want: undefined on amd64
}
