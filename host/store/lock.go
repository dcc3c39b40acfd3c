package store

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// OpLockFile is the instance's operation lock: held by `berth start` from its first check
// until the instance runs or the start fails, and by `berth delete`, so that two of them on
// one instance never overlap. It records "<pid> <op>". It is a file of its own, not
// hostd.pid: "a daemon holds hostd.pid" keeps meaning "the instance is up".
const OpLockFile = "op.lock"

// ErrLocked means the lock is held by another process (or another open of the file).
var ErrLocked = errors.New("instance is in use by a running berth daemon")

// busyRetries bounds how long a locker retries a held lock: readers (DaemonPID, OpHolder)
// hold it for a moment to probe it, which must not make a real locker fail.
const busyRetries = 10

// pidRetries bounds how long a reader waits for a fresh holder to write its pid.
const pidRetries = 40

// parseHolder reads "<pid>[ <op>]".
func parseHolder(b []byte) (int, string) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, ""
	}
	pid, _ := strconv.Atoi(f[0])
	op := ""
	if len(f) > 1 {
		op = f[1]
	}
	return pid, op
}

// TryLock takes the daemon lock (an exclusive lock on hostd.pid, which records the pid) or
// returns ErrLocked.
func (i *Instance) TryLock() (*Lock, error) {
	return lockFile(i.Path(PIDFile), "")
}

// DaemonPID returns the pid of the daemon holding the instance, or 0 when none does; -1
// when one does but its pid could not be read (it is writing it).
func (i *Instance) DaemonPID() int {
	pid, _ := holder(i.Path(PIDFile))
	return pid
}

// LockOp takes the operation lock for op ("start", "delete") or returns ErrLocked; then
// OpHolder tells who holds it.
func (i *Instance) LockOp(op string) (*Lock, error) {
	return lockFile(i.Path(OpLockFile), op)
}

// OpHolder returns the pid and the operation of the process holding the operation lock,
// or 0 and "" when none does (pid -1: held, not yet recorded).
func (i *Instance) OpHolder() (int, string) {
	return holder(i.Path(OpLockFile))
}

// holder returns the pid (and op) recorded in path when a process holds its lock; 0 when
// none does; -1 when one does but has not written its pid yet.
func holder(path string) (int, string) {
	for try := 0; ; try++ {
		f, err := openForProbe(path)
		if err != nil {
			return 0, ""
		}
		if unlocked(f) {
			f.Close()
			return 0, "" // nobody holds it
		}
		b := make([]byte, 64)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if pid, op := parseHolder(b[:n]); pid > 0 {
			return pid, op
		}
		// A holder that has just taken the lock on a new (empty) file writes its pid next.
		if try == pidRetries {
			return -1, ""
		}
		time.Sleep(5 * time.Millisecond)
	}
}
