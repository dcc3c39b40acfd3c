package qemu

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestQMPMonitorRealQEMU runs the monitor against a real QEMU (no guest: -machine none)
// with both monitors of Args, so the second one really serves while the first stays free
// for the stop path.
func TestQMPMonitorRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-nographic", "-S",
		"-chardev", "socket,id=qmp,path="+filepath.Join(dir, qmpSocket)+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=qmpev,path="+filepath.Join(dir, qmpEventsSocket)+",server=on,wait=off",
		"-mon", "chardev=qmpev,mode=control")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	go func() { cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-gone
	})
	m := newQMPMonitor(nil, slog.New(slog.DiscardHandler))
	ended := make(chan struct{})
	go func() { defer close(ended); m.run(filepath.Join(dir, qmpEventsSocket), gone) }()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if st, err := m.Status(ctx); err != nil || st != "prelaunch" {
		t.Fatalf("status %q, %v; want prelaunch (-S)", st, err)
	}
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx); err != nil || st != "running" {
		t.Fatalf("after Resume: status %q, %v", st, err)
	}
	// The first monitor is still free: the stop path quits QEMU through it.
	if err := qmpCommand(ctx, filepath.Join(dir, qmpSocket), "quit"); err != nil {
		t.Fatalf("quit on the first monitor while the second is held: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the monitor did not end with QEMU")
	}
}
