package qemu

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/vm"
)

// TestPauseRealQEMU: Pause and Resume move a real QEMU between paused and running over the
// events monitor, and pausing twice is harmless.
func TestPauseRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-nographic",
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
	d := &Driver{qmp: newQMPMonitor(nil, slog.New(slog.DiscardHandler))}
	go d.qmp.run(filepath.Join(dir, qmpEventsSocket), gone)
	var p vm.Pauser = d
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, step := range []struct {
		do   func(context.Context) error
		want string
	}{{p.Pause, "paused"}, {p.Pause, "paused"}, {p.Resume, "running"}, {p.Resume, "running"}} {
		if err := step.do(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := d.qmp.Status(ctx); err != nil || st != step.want {
			t.Fatalf("status %q, %v; want %s", st, err, step.want)
		}
	}
}

// TestBalloonDevice: the VM gets a virtio-balloon with free page reporting, and this
// machine's QEMU knows the property.
func TestBalloonDevice(t *testing.T) {
	cfg := vm.Config{Name: "t", Arch: "amd64", CPUs: 1, MemoryMiB: 512, Kernel: "/k", Initrd: "/i",
		Agent: vm.AgentChannel{SerialName: "a"}, RuntimeDir: "/r"}
	args, err := Args(cfg, "tcg")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "virtio-balloon-pci,free-page-reporting=on"
	if !slices.Contains(args, dev) {
		t.Fatalf("no %s in %v", dev, args)
	}
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	out, _ := exec.Command(bin, "-device", "virtio-balloon-pci,help").CombinedOutput()
	if !strings.Contains(string(out), "free-page-reporting") {
		t.Fatalf("this QEMU has no free-page-reporting:\n%s", out)
	}
}
