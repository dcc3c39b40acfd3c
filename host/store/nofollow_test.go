//go:build !windows

package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLockRefusesPlantedSymlink (RELIABILITY item 2): a symbolic link planted at the pid
// file's path is refused with what to do, and what it points at is neither written nor
// truncated.
func TestLockRefusesPlantedSymlink(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	inst, err := Create("dev", DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(t.TempDir(), "bashrc")
	os.WriteFile(victim, []byte("the user's file\n"), 0o600)
	for _, f := range []string{PIDFile, OpLockFile} {
		if err := os.Symlink(victim, inst.Path(f)); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := inst.TryLock(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if l != nil {
			l.Release()
		}
		t.Fatalf("TryLock over a symlink: %v", err)
	}
	if l, err := inst.LockOp("start"); err == nil || !strings.Contains(err.Error(), "remove it") {
		if l != nil {
			l.Release()
		}
		t.Fatalf("LockOp over a symlink: %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "the user's file\n" {
		t.Fatalf("the link's target was written: %q", b)
	}
	// A plain file is still fine.
	os.Remove(inst.Path(PIDFile))
	l, err := inst.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
}
