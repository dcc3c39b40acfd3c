//go:build darwin && cgo

package vz

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	vzlib "github.com/Code-Hex/vz/v3"

	"github.com/berth-dev/berth/vm"
)

// This runs on a Mac only (CI type-checks it with tools/typecheck). It builds the whole
// VZ configuration from a plan without booting: a `go test` binary is not signed with the
// virtualization entitlement, so validation may refuse, and that must be the reason.
func TestConfigurationBuilds(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kernel := make([]byte, 4096)
	copy(kernel[0x38:], "ARM\x64")
	disk := make([]byte, 1<<20)

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours := os.NewFile(uintptr(fds[0]), "vm-side")
	theirs := os.NewFile(uintptr(fds[1]), "net-side")
	defer ours.Close()
	defer theirs.Close()

	cfg := vm.Config{
		Name:       "test",
		Arch:       runtime.GOARCH,
		CPUs:       2,
		MemoryMiB:  512,
		Kernel:     write("Image", kernel),
		Initrd:     write("initrd", []byte("initrd")),
		CmdLine:    "quiet",
		Disks:      []vm.Disk{{Path: write("root.img", disk), ReadOnly: true, ID: "berth-root"}},
		NICs:       []vm.NIC{{MAC: "52:54:00:12:34:56", Conn: ours}},
		Shares:     []vm.Share{{Tag: "home", HostPath: dir, ReadOnly: true}},
		Agent:      vm.AgentChannel{VsockPort: 1024},
		ConsoleLog: filepath.Join(dir, "console.log"),
	}
	drv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := drv.(*Driver)
	if d.plan.CPUs < vzlib.VirtualMachineConfigurationMinimumAllowedCPUCount() {
		t.Fatalf("cpus %d below vz's minimum", d.plan.CPUs)
	}
	_, err = d.configuration()
	if err != nil && !strings.Contains(err.Error(), "entitlement") {
		t.Fatalf("configuration: %v", err)
	}
	if _, err := os.Stat(cfg.ConsoleLog); err != nil {
		t.Fatalf("console log not created: %v", err)
	}
	if _, err := d.DialAgent(t.Context()); err == nil {
		t.Fatal("DialAgent before Start succeeded")
	}
}
