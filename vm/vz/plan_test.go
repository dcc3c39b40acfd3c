package vz

import (
	"bytes"
	"errors"
	"net"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-dev/berth/vm"
)

// limits like an 8-core, 16 GiB Apple silicon Mac reports them.
var macLimits = Limits{MinCPUs: 1, MaxCPUs: 8, MinMemory: 128 << 20, MaxMemory: 16 << 30}

func baseConfig() vm.Config {
	return vm.Config{
		Name:      "default",
		Arch:      "arm64",
		CPUs:      4,
		MemoryMiB: 4096,
		Kernel:    "/k/Image",
		Initrd:    "/k/initrd",
		CmdLine:   "quiet console=ttyAMA0 panic=-1",
		Agent:     vm.AgentChannel{VsockPort: 1024, SerialName: "io.berth.agent"},
	}
}

func TestBuildPlanDevices(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "sock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := baseConfig()
	cfg.ConsoleLog = "/s/console.log"
	cfg.Disks = []vm.Disk{
		{Path: "/i/root.img", ReadOnly: true, ID: "berth-root"},
		{Path: "/s/data.img", ID: "berth-data"},
	}
	cfg.NICs = []vm.NIC{{MAC: "52:54:00:12:34:56", Conn: f}}
	cfg.Shares = []vm.Share{
		{Tag: "home", HostPath: "/Users/me"},
		{Tag: "ro", HostPath: "/opt/x", ReadOnly: true},
	}
	p, err := BuildPlan(cfg, Host{GOARCH: "arm64", Rosetta: RosettaInstalled, Limits: macLimits})
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Name:        "default",
		Kernel:      "/k/Image",
		Initrd:      "/k/initrd",
		CmdLine:     "quiet panic=-1 console=hvc0",
		CPUs:        4,
		MemoryBytes: 4096 << 20,
		Disks: []DiskPlan{
			{Path: "/i/root.img", ReadOnly: true, Identifier: "berth-root"},
			{Path: "/s/data.img", Identifier: "berth-data"},
		},
		NICs: []NICPlan{{MAC: net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}, Conn: f}},
		Shares: []SharePlan{
			{Tag: "home", HostPath: "/Users/me"},
			{Tag: "ro", HostPath: "/opt/x", ReadOnly: true},
			{Tag: "rosetta", ReadOnly: true, Rosetta: true},
		},
		VsockPort:  1024,
		ConsoleLog: "/s/console.log",
		Entropy:    true,
		Balloon:    true,
		Notes:      []string{"kernel command line: console=ttyAMA0 replaced by console=hvc0 (vz has only a virtio console)"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("plan\n got %+v\nwant %+v", p, want)
	}
}

func TestBuildPlanClamps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cpus    int
		mem     uint64
		limits  Limits
		wantCPU uint
		wantMem uint64
		note    string
		err     string
	}{
		{name: "inside", cpus: 2, mem: 1024, limits: macLimits, wantCPU: 2, wantMem: 1 << 30},
		{name: "too many cpus", cpus: 64, mem: 1024, limits: macLimits, wantCPU: 8, wantMem: 1 << 30, note: "cpus lowered from 64 to vz's maximum 8"},
		{name: "too few cpus", cpus: 1, mem: 1024, limits: Limits{MinCPUs: 2, MaxCPUs: 8, MinMemory: 1, MaxMemory: 8 << 30}, wantCPU: 2, wantMem: 1 << 30, note: "cpus raised from 1 to vz's minimum 2"},
		{name: "too much memory", cpus: 2, mem: 64 << 10, limits: macLimits, wantCPU: 2, wantMem: 16 << 30, note: "memory lowered from 65536 MiB to vz's maximum 16384 MiB"},
		{name: "too little memory", cpus: 2, mem: 256, limits: Limits{MinCPUs: 1, MaxCPUs: 2, MinMemory: 512 << 20, MaxMemory: 8 << 30}, wantCPU: 2, wantMem: 512 << 20, note: "memory raised from 256 MiB to vz's minimum 512 MiB"},
		{name: "max not a MiB multiple", cpus: 2, mem: 1 << 20, limits: Limits{MinCPUs: 1, MaxCPUs: 2, MinMemory: 1, MaxMemory: 8<<30 + 12345}, wantCPU: 2, wantMem: 8 << 30, note: "memory lowered"},
		{name: "min not a MiB multiple", cpus: 2, mem: 256, limits: Limits{MinCPUs: 1, MaxCPUs: 2, MinMemory: 300<<20 + 1, MaxMemory: 8 << 30}, wantCPU: 2, wantMem: 301 << 20, note: "memory raised"},
		{name: "no cpu range", cpus: 2, mem: 1024, limits: Limits{MinMemory: 1, MaxMemory: 1 << 30}, err: "no usable CPU range"},
		{name: "no memory range", cpus: 2, mem: 1024, limits: Limits{MinCPUs: 1, MaxCPUs: 1}, err: "no usable memory range"},
		{name: "zero cpus", cpus: 0, mem: 1024, limits: macLimits, err: "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.CPUs, cfg.MemoryMiB = tc.cpus, tc.mem
			p, err := BuildPlan(cfg, Host{GOARCH: "arm64", Limits: tc.limits})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.CPUs != tc.wantCPU || p.MemoryBytes != tc.wantMem {
				t.Fatalf("cpus %d mem %d, want %d %d", p.CPUs, p.MemoryBytes, tc.wantCPU, tc.wantMem)
			}
			if p.MemoryBytes%(1<<20) != 0 {
				t.Fatalf("memory %d is not a whole MiB", p.MemoryBytes)
			}
			notes := strings.Join(p.Notes, "\n")
			if tc.note == "" && strings.Contains(notes, "cpus") || tc.note != "" && !strings.Contains(notes, tc.note) {
				t.Fatalf("notes %q, want %q", notes, tc.note)
			}
		})
	}
}

func TestConsoleCmdLine(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		dropped  []string
	}{
		{"", "console=hvc0", nil},
		{"quiet", "quiet console=hvc0", nil},
		{"console=ttyS0 quiet console=tty0", "quiet console=hvc0", []string{"console=ttyS0", "console=tty0"}},
		{"console=hvc0", "console=hvc0", []string{"console=hvc0"}},
		{"  quiet\tpanic=-1  ", "quiet panic=-1 console=hvc0", nil},
		{"quiet -- console=keep x", "quiet console=hvc0 -- console=keep x", nil},
	} {
		got, dropped := ConsoleCmdLine(tc.in)
		if got != tc.want || !reflect.DeepEqual(dropped, tc.dropped) {
			t.Errorf("ConsoleCmdLine(%q) = %q, %q; want %q, %q", tc.in, got, dropped, tc.want, tc.dropped)
		}
	}
}

func TestBuildPlanRosetta(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		rosetta Rosetta
		share   bool
		note    string
	}{
		{"installed", "arm64", RosettaInstalled, true, ""},
		{"not installed", "arm64", RosettaNotInstalled, false, "softwareupdate --install-rosetta"},
		{"unsupported", "arm64", RosettaUnsupported, false, ""},
		{"intel", "amd64", RosettaInstalled, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Arch = tc.host
			p, err := BuildPlan(cfg, Host{GOARCH: tc.host, Rosetta: tc.rosetta, Limits: macLimits})
			if err != nil {
				t.Fatal(err)
			}
			got := false
			for _, s := range p.Shares {
				if s.Rosetta {
					got = true
					if s.Tag != RosettaTag || !s.ReadOnly {
						t.Fatalf("rosetta share %+v", s)
					}
				}
			}
			if got != tc.share {
				t.Fatalf("rosetta share = %v, want %v", got, tc.share)
			}
			notes := strings.Join(p.Notes, "\n")
			if tc.note != "" && !strings.Contains(notes, tc.note) || tc.note == "" && strings.Contains(notes, "Rosetta") {
				t.Fatalf("notes %q, want %q", notes, tc.note)
			}
		})
	}
}

func TestBuildPlanRejects(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "sock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name        string
		mod         func(*vm.Config)
		host        Host
		err         string
		unsupported bool
	}{
		{name: "foreign arch", mod: func(c *vm.Config) { c.Arch = "amd64" }, err: "host's architecture", unsupported: true},
		{name: "tcg", mod: func(c *vm.Config) { c.Accel = "tcg" }, err: "accelerator", unsupported: true},
		{name: "serial only", mod: func(c *vm.Config) { c.Agent.VsockPort = 0 }, err: "vsock", unsupported: true},
		{name: "bad name", mod: func(c *vm.Config) { c.Name = "Bad Name" }, err: "invalid VM name"},
		{name: "no kernel", mod: func(c *vm.Config) { c.Kernel = "" }, err: "kernel"},
		{name: "long disk id", mod: func(c *vm.Config) { c.Disks = []vm.Disk{{Path: "/d", ID: "this-id-is-too-long-for-virtio"}} }, err: "longer than 20"},
		{name: "non-ascii disk id", mod: func(c *vm.Config) { c.Disks = []vm.Disk{{Path: "/d", ID: "dätä"}} }, err: "printable ASCII"},
		{name: "duplicate disk id", mod: func(c *vm.Config) { c.Disks = []vm.Disk{{Path: "/a", ID: "x"}, {Path: "/b", ID: "x"}} }, err: "used twice"},
		{name: "empty disk path", mod: func(c *vm.Config) { c.Disks = []vm.Disk{{ID: "x"}} }, err: "empty path"},
		{name: "nic without socket", mod: func(c *vm.Config) { c.NICs = []vm.NIC{{MAC: "52:54:00:00:00:01"}} }, err: "Conn is nil"},
		{name: "bad mac", mod: func(c *vm.Config) { c.NICs = []vm.NIC{{MAC: "nope", Conn: f}} }, err: "invalid MAC"},
		{name: "multicast mac", mod: func(c *vm.Config) { c.NICs = []vm.NIC{{MAC: "01:00:5e:00:00:01", Conn: f}} }, err: "multicast"},
		{name: "long mac", mod: func(c *vm.Config) { c.NICs = []vm.NIC{{MAC: "02:00:5e:10:00:00:00:01", Conn: f}} }, err: "48-bit"},
		{name: "empty tag", mod: func(c *vm.Config) { c.Shares = []vm.Share{{HostPath: "/x"}} }, err: "empty virtiofs tag"},
		{name: "long tag", mod: func(c *vm.Config) { c.Shares = []vm.Share{{Tag: strings.Repeat("t", 37), HostPath: "/x"}} }, err: "longer than 36"},
		{name: "tag with space", mod: func(c *vm.Config) { c.Shares = []vm.Share{{Tag: "a b", HostPath: "/x"}} }, err: "without spaces"},
		{name: "duplicate tag", mod: func(c *vm.Config) { c.Shares = []vm.Share{{Tag: "a", HostPath: "/x"}, {Tag: "a", HostPath: "/y"}} }, err: "used twice"},
		{name: "rosetta tag taken", mod: func(c *vm.Config) { c.Shares = []vm.Share{{Tag: "rosetta", HostPath: "/x"}} }, host: Host{Rosetta: RosettaInstalled}, err: "reserved for Rosetta"},
		{name: "relative share", mod: func(c *vm.Config) { c.Shares = []vm.Share{{Tag: "a", HostPath: "x"}} }, err: "not absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			tc.mod(&cfg)
			h := tc.host
			h.GOARCH, h.Limits = "arm64", macLimits
			_, err := BuildPlan(cfg, h)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if errors.Is(err, vm.ErrUnsupported) != tc.unsupported {
				t.Fatalf("errors.Is(%v, ErrUnsupported) = %v", err, !tc.unsupported)
			}
		})
	}
	// The Rosetta tag is an ordinary tag where there is no Rosetta share.
	cfg := baseConfig()
	cfg.Shares = []vm.Share{{Tag: "rosetta", HostPath: "/x"}}
	if _, err := BuildPlan(cfg, Host{GOARCH: "arm64", Rosetta: RosettaNotInstalled, Limits: macLimits}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckKernel(t *testing.T) {
	image := make([]byte, 128)
	copy(image[0x38:], "ARM\x64")
	zboot := make([]byte, 128)
	copy(zboot, "MZ\x00\x00zimg")
	for _, tc := range []struct {
		name string
		data []byte
		arch string
		err  string
	}{
		{"arm64 Image", image, "arm64", ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0}, "arm64", "gzip"},
		{"gzip amd64", []byte{0x1f, 0x8b, 8, 0}, "amd64", "gzip"},
		{"zboot", zboot, "arm64", "zboot"},
		{"garbage", bytes.Repeat([]byte{1}, 100), "arm64", "not an arm64 Linux Image"},
		{"short", []byte("ARM"), "arm64", "not an arm64 Linux Image"},
		{"bzImage on amd64", append(make([]byte, 0x202), "HdrS"...), "amd64", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckKernel(bytes.NewReader(tc.data), tc.arch)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestNewOffMacOS(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("on macOS New is real (or reports the missing cgo)")
	}
	if _, err := New(baseConfig(), nil); !errors.Is(err, vm.ErrUnsupported) || !strings.Contains(err.Error(), "only on macOS") {
		t.Fatalf("New = %v", err)
	}
}
