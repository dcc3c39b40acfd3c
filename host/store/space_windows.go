package daemon

import "golang.org/x/sys/windows"

// hostFreeSpace returns the bytes the calling user may still write on the volume holding
// dir. No Windows driver reports I/O-error pauses today (WSL); this keeps the watch whole.
func hostFreeSpace(dir string) (uint64, error) {
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
