//go:build linux && !amd64 && !arm64

package guard

// nativeArch is nil: the share guard knows the syscall numbers of amd64 and arm64 only,
// and Install refuses to run elsewhere rather than leave the file servers unconfined.
var nativeArch *archTable
