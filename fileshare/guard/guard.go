// Package guard confines the processes that serve shared directories to the guest (QEMU's
// 9p server, virtiofsd) with a seccomp filter, so that nothing the guest does through a
// share can plant privileges on the host: no setuid/setgid bits, no device nodes or fifos,
// no file capabilities or other xattrs, and (for virtiofsd, which runs as root) no switch
// to the guest's uid, so every file it creates belongs to the user who runs berth.
//
// The filter is installed by a small wrapper: the berth binary re-executes itself as
// `berth __shareguard PROFILE -- PROGRAM ARGS...`, installs the filter (it survives
// execve, as do PDEATHSIG and inherited descriptors) and executes PROGRAM. It is Linux-only;
// see docs/file-sharing.md for what other platforms do.
package guard

// Profile selects the rules for one kind of file server.
type Profile string

const (
	// ProfileQEMU is for QEMU, whose 9p server writes as the QEMU process's user.
	ProfileQEMU Profile = "qemu"
	// ProfileVirtiofsd is for Debian's C virtiofsd, which runs as root and switches to the
	// guest's uid per request: under this profile the switch is a no-op.
	ProfileVirtiofsd Profile = "virtiofsd"
)

// Arg is the hidden first argument of the berth binary that runs Main.
const Arg = "__shareguard"

func (p Profile) valid() bool { return p == ProfileQEMU || p == ProfileVirtiofsd }
