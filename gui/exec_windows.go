package gui

import (
	"os/exec"
	"syscall"
)

// hideWindow keeps a console program started by the tray (a GUI program) from flashing
// a console window.
func hideWindow(cmd *exec.Cmd) {
	const createNoWindow = 0x08000000
	cmd.SysProcAttr = &syscall.SysProcAttr{HideWindow: true, CreationFlags: createNoWindow}
}
