//go:build !windows

package store

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// FreeSpace returns the bytes berth (and the VM's process) may still write on the file system
// holding dir. Root (QEMU runs as hostd's user) may also use the blocks the file system
// reserves for it, so for root that is all free blocks, for others the available ones.
func FreeSpace(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	blocks := uint64(st.Bavail)
	if os.Geteuid() == 0 {
		blocks = uint64(st.Bfree)
	}
	return blocks * uint64(st.Bsize), nil
}

// Allocated is the space a (sparse) file takes on disk.
func Allocated(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Blocks) * 512
	}
	return uint64(fi.Size())
}
