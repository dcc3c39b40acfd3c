package qemu

import "syscall"

// QEMU dies with the daemon that owns it, so a killed daemon never leaves a VM behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
