//go:build cgo && !windows

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// takeStdout keeps stdout for the window channel alone: it returns a new descriptor for
// it and points descriptor 1 at stderr, so whatever else prints (a C library, a stray
// fmt.Print) cannot corrupt the channel.
func takeStdout() (*os.File, error) {
	fd, err := unix.Dup(1)
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.Dup2(2, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "window-channel"), nil
}
