//go:build !windows

package daemon

import "syscall"

// setUmask makes every socket and file the daemon creates private from the start, with
// no window where a socket is world-connectable before a chmod.
func setUmask() { syscall.Umask(0o077) }
