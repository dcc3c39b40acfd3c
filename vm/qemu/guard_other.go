//go:build !linux

package qemu

import "os/exec"

// WrapCommand is nil off Linux: the share guard is a Linux seccomp filter, and QEMU runs
// directly.
var WrapCommand func(argv []string) (*exec.Cmd, error)
