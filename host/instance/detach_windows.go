package instance

import "syscall"

const createNewProcessGroup = 0x00000200
const detachedProcess = 0x00000008

func detach() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: createNewProcessGroup | detachedProcess}
}
