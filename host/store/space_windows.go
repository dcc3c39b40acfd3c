package store

import (
	"os"

	"golang.org/x/sys/windows"
)

// FreeSpace returns the bytes the calling user may still write on the volume holding
// dir. No Windows driver reports I/O-error pauses today (WSL); this keeps the watch whole.
func FreeSpace(dir string) (uint64, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, err
	}
	return avail, nil
}

// Allocated: Windows reports no allocation size through os.FileInfo; the logical size
// overstates a sparse file, which only makes a growth estimate conservative.
func Allocated(fi os.FileInfo) uint64 { return uint64(fi.Size()) }
