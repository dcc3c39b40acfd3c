//go:build !linux

package guard

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// ErrUnsupported: the share guard is a Linux seccomp filter.
var ErrUnsupported = errors.New("share guard: supported on Linux only")

// Install is unavailable off Linux.
func Install(Profile) error { return ErrUnsupported }

// Command is unavailable off Linux.
func Command(Profile, []string) (*exec.Cmd, error) { return nil, ErrUnsupported }

// Main reports that the guard is unavailable and exits.
func Main([]string) {
	fmt.Fprintf(os.Stderr, "berth %s: %v\n", Arg, ErrUnsupported)
	os.Exit(126)
}
