//go:build !windows

package instance

import "syscall"

// detach starts the daemon in its own session so it outlives the terminal.
func detach() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
