package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/windows"
)

// ErrLocked means a live daemon holds the instance.
var ErrLocked = errors.New("instance is in use by a running berth daemon")

// Lock is the daemon's hold on an instance: an exclusive LockFileEx on hostd.pid, dropped by
// the kernel when the process dies.
type Lock struct{ f *os.File }

// TryLock takes the instance lock or returns ErrLocked.
func (i *Instance) TryLock() (*Lock, error) {
	f, err := os.OpenFile(i.Path(PIDFile), os.O_RDWR|os.O_CREATE, privFileMode)
	if err != nil {
		return nil, err
	}
	ol := new(windows.Overlapped)
	// Lock a byte past any pid text so readers can still read the pid.
	ol.Offset = 1 << 20
	if err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol); err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("failed to lock %s: %w", f.Name(), err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	l.f.Close()
	os.Remove(l.f.Name())
}

// DaemonPID returns the pid of the daemon holding the instance, or 0 when none does.
func (i *Instance) DaemonPID() int {
	f, err := os.OpenFile(i.Path(PIDFile), os.O_RDWR, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	ol := new(windows.Overlapped)
	ol.Offset = 1 << 20
	if err := windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol); err == nil {
		windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, ol)
		return 0
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid
}
