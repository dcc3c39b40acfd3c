//go:build !windows

package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a process's hold on an instance: an flock on a file that also records the pid.
// The kernel drops the lock when the process dies, so a kill -9 never leaves a stale lock,
// and a reused pid can never be mistaken for ours.
type Lock struct{ f *os.File }

// lockFile takes an exclusive flock on path and records "<pid>[ <op>]" in it.
func lockFile(path, op string) (*Lock, error) {
	busy := 0
	for range 100 + busyRetries {
		f, err := OpenPrivate(path, os.O_RDWR|os.O_CREATE, privFileMode)
		if err != nil {
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				if busy++; busy > busyRetries {
					return nil, ErrLocked
				}
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return nil, fmt.Errorf("failed to lock %s: %w", path, err)
		}
		// Release removes the file. Whoever opened it just before that removal now holds a
		// lock on a file no one else will ever open again, while the next locker creates
		// and locks a new one: two holders. So the lock only counts if the file we hold is
		// still the one at path; otherwise open the new one and try again.
		var held, now unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		if err := unix.Stat(path, &now); err != nil || now.Dev != held.Dev || now.Ino != held.Ino {
			f.Close()
			continue
		}
		rec := strconv.Itoa(os.Getpid())
		if op != "" {
			rec += " " + op
		}
		rec += "\n"
		// Write, then cut: a reader never sees an empty file where a pid was.
		f.WriteAt([]byte(rec), 0)
		f.Truncate(int64(len(rec)))
		return &Lock{f: f}, nil
	}
	return nil, fmt.Errorf("failed to lock %s: it keeps being replaced", path)
}

// Release removes the file and drops the lock. Removing first means that from now on a
// locker opens a new file; one that opened the old file meanwhile sees that it was
// replaced (lockFile).
func (l *Lock) Release() {
	os.Remove(l.f.Name())
	l.f.Close()
}

// openForProbe opens a lock file for a look at its holder.
func openForProbe(path string) (*os.File, error) { return os.Open(path) }

// unlocked reports whether nobody holds f's lock (a shared lock can be had at once).
func unlocked(f *os.File) bool {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return false
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return true
}
