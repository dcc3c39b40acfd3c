package store

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockExclusiveAcrossRelease hammers TryLock and Release from several goroutines (each
// TryLock opens its own file description, as separate processes would). Release removes
// the pid file; a locker that opened the file just before that removal must not end up
// holding the unlinked file while another locks the new one: at most one holder, ever.
func TestLockExclusiveAcrossRelease(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := Create("race", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		lock func() (*Lock, error)
	}{
		{"daemon", inst.TryLock},
		{"op", func() (*Lock, error) { return inst.LockOp("start") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var holders, maxHolders, taken atomic.Int32
			var wg sync.WaitGroup
			deadline := time.Now().Add(2 * time.Second)
			for range 6 {
				wg.Go(func() {
					for time.Now().Before(deadline) {
						l, err := tc.lock()
						if errors.Is(err, ErrLocked) {
							continue
						}
						if err != nil {
							t.Error(err)
							return
						}
						n := holders.Add(1)
						for {
							m := maxHolders.Load()
							if n <= m || maxHolders.CompareAndSwap(m, n) {
								break
							}
						}
						taken.Add(1)
						time.Sleep(20 * time.Microsecond)
						holders.Add(-1)
						l.Release()
					}
				})
			}
			wg.Wait()
			t.Logf("%d locks taken", taken.Load())
			if m := maxHolders.Load(); m > 1 {
				t.Errorf("%d holders of one lock at once", m)
			}
		})
	}
}

// TestLockOpHolder checks what LockOp records: the holder's pid and the operation.
func TestLockOpHolder(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := Create("op", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if pid, op := inst.OpHolder(); pid != 0 || op != "" {
		t.Errorf("no holder yet, got %d %q", pid, op)
	}
	l, err := inst.LockOp("start")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inst.LockOp("delete"); !errors.Is(err, ErrLocked) {
		t.Errorf("second LockOp: %v, want ErrLocked", err)
	}
	if pid, op := inst.OpHolder(); pid != os.Getpid() || op != "start" {
		t.Errorf("holder %d %q, want %d start", pid, op, os.Getpid())
	}
	// The daemon lock is another file: an op lock does not make a daemon.
	if inst.DaemonPID() != 0 {
		t.Error("op lock taken, but DaemonPID != 0")
	}
	l.Release()
	if pid, op := inst.OpHolder(); pid != 0 || op != "" {
		t.Errorf("released, got %d %q", pid, op)
	}
	l2, err := inst.LockOp("delete")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Release()
	if _, op := inst.OpHolder(); op != "delete" {
		t.Errorf("op %q, want delete", op)
	}
}
