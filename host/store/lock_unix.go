//go:build !windows

package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrLocked means a live daemon holds the instance.
var ErrLocked = errors.New("instance is in use by a running berth daemon")

// Lock is the daemon's hold on an instance: an flock on hostd.pid, which also records the
// pid. The kernel drops the lock when the process dies, so a kill -9 never leaves a stale
// lock, and a reused pid can never be mistaken for ours.
type Lock struct{ f *os.File }

// TryLock takes the instance lock or returns ErrLocked.
func (i *Instance) TryLock() (*Lock, error) {
	f, err := os.OpenFile(i.Path(PIDFile), os.O_RDWR|os.O_CREATE, privFileMode)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("failed to lock %s: %w", f.Name(), err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Lock{f: f}, nil
}

// Release drops the lock and removes the pid file.
func (l *Lock) Release() {
	os.Remove(l.f.Name())
	l.f.Close()
}

// DaemonPID returns the pid of the daemon holding the instance, or 0 when none does.
func (i *Instance) DaemonPID() int {
	f, err := os.Open(i.Path(PIDFile))
	if err != nil {
		return 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0 // nobody holds it
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	return pid
}
