package qemu

import (
	"os/exec"

	"github.com/berth-dev/berth/fileshare/guard"
)

// WrapCommand builds the command that runs QEMU (argv[0] is its path). On Linux it runs
// QEMU under the share guard's seccomp filter (fileshare/guard), which keeps the 9p server
// from planting setuid files, device nodes, fifos or file capabilities on the host; the
// berth binary provides the wrapper. A program that is not berth (a unit test that starts
// QEMU) sets it to nil to run QEMU directly.
var WrapCommand = func(argv []string) (*exec.Cmd, error) {
	return guard.Command(guard.ProfileQEMU, argv)
}
