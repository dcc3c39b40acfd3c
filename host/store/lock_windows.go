package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/windows"
)

// Lock is a process's hold on an instance: an exclusive LockFileEx on a file that records
// the pid, dropped by the kernel when the process dies. Files open without
// FILE_SHARE_DELETE cannot be removed while another process has them open, so the file a
// locker opened is still the one at the path.
type Lock struct{ f *os.File }

// lockOffset: lock a byte past any pid text so readers can still read the pid.
const lockOffset = 1 << 20

func lockFile(path, op string) (*Lock, error) {
	var f *os.File
	for busy := 0; ; busy++ {
		var err error
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, privFileMode); err != nil {
			return nil, err
		}
		ol := new(windows.Overlapped)
		ol.Offset = lockOffset
		err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
		if err == nil {
			break
		}
		f.Close()
		if !errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("failed to lock %s: %w", path, err)
		}
		// Readers probe the lock for a moment (holder); only a lasting holder counts.
		if busy == busyRetries {
			return nil, ErrLocked
		}
		time.Sleep(5 * time.Millisecond)
	}
	rec := strconv.Itoa(os.Getpid())
	if op != "" {
		rec += " " + op
	}
	rec += "\n"
	f.WriteAt([]byte(rec), 0)
	f.Truncate(int64(len(rec)))
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	l.f.Close()
	os.Remove(l.f.Name())
}

// openForProbe opens a lock file for a look at its holder (LockFileEx needs write access).
func openForProbe(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR, 0) }

// unlocked reports whether nobody holds f's lock.
func unlocked(f *os.File) bool {
	ol := new(windows.Overlapped)
	ol.Offset = lockOffset
	if err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol); err != nil {
		return false
	}
	windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, ol)
	return true
}
