//go:build linux

package guestagent

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PowerOff syncs, unmounts the data disk and everything mounted from it (best effort) and
// powers the guest off. It works from any root process. It returns only if the power-off
// failed, after printing why on stderr.
func PowerOff() {
	err := powerOff()
	fmt.Fprintf(os.Stderr, "berth-agent: power off failed: %v\n", err)
}

// powerOff syncs, unmounts the data disk and everything on it (the engine's overlay
// and network namespace mounts, shares) and powers off. Unmounting is best effort: a
// busy data file system is remounted read-only instead, and the journal covers the rest.
func powerOff() error {
	unix.Sync()
	f, err := os.Open("/proc/self/mountinfo")
	if err == nil {
		mounts, _ := parseMountinfo(f)
		f.Close()
		for _, m := range unmountOrder(mounts) {
			if err := unix.Unmount(m.MountPoint, 0); err != nil && m.MountPoint == dataMount {
				_ = unix.Mount("", dataMount, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
			}
		}
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
