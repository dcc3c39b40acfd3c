package wsl

import (
	"encoding/base64"
	"errors"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/berth-dev/berth/vm"
)

func wslConfig() vm.Config {
	return vm.Config{
		Name:       "default",
		Arch:       "amd64",
		Agent:      vm.AgentChannel{VsockPort: 1024},
		ConsoleLog: `C:\Users\me\.berth\default\console.log`,
	}
}

var wslOpts = Options{InstallDir: `C:\Users\me\AppData\Local\berth\default`, RootfsTar: `C:\img\rootfs.tar`}

func TestBuildPlan(t *testing.T) {
	cfg := wslConfig()
	cfg.CPUs, cfg.MemoryMiB = 4, 4096
	cfg.Kernel = "vmlinuz"
	cfg.Shares = []vm.Share{
		{Tag: "home", HostPath: `C:\Users\me`},
		{Tag: "data", HostPath: `\\nas\data`, ReadOnly: true},
	}
	p, err := BuildPlan(cfg, wslOpts, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Distro:     "berth-default",
		InstallDir: wslOpts.InstallDir,
		RootfsTar:  wslOpts.RootfsTar,
		WSLExe:     "wsl.exe",
		VsockPort:  1024,
		ConsoleLog: cfg.ConsoleLog,
		Mounts: []Mount{
			{Tag: "home", Source: `C:\Users\me`, Target: "/mnt/berth/home"},
			{Tag: "data", Source: `\\nas\data`, Target: "/mnt/berth/data", ReadOnly: true},
		},
		Notes: []string{
			"kernel ignored: WSL boots its own kernel",
			`cpus and memory ignored: WSL sets them for all distributions in %UserProfile%\.wslconfig ([wsl2] processors=, memory=)`,
		},
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("plan\n got %+v\nwant %+v", p, want)
	}

	if got, want := p.ImportArgs(), []string{"--import", "berth-default", wslOpts.InstallDir, wslOpts.RootfsTar, "--version", "2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("import %q", got)
	}
	if got, want := p.TerminateArgs(), []string{"--terminate", "berth-default"}; !reflect.DeepEqual(got, want) {
		t.Errorf("terminate %q", got)
	}
	if got, want := p.UnregisterArgs(), []string{"--unregister", "berth-default"}; !reflect.DeepEqual(got, want) {
		t.Errorf("unregister %q", got)
	}
	if got, want := p.AgentArgs(nil), []string{"--distribution", "berth-default", "--user", "root", "--exec", "/usr/local/bin/berth-agent", "serve", "--vsock"}; !reflect.DeepEqual(got, want) {
		t.Errorf("agent %q", got)
	}
	if got := p.AgentArgs([]string{"/a", "--port=2000"}); !reflect.DeepEqual(got[len(got)-2:], []string{"/a", "--port=2000"}) {
		t.Errorf("custom agent %q", got)
	}
	mounts := p.MountArgs(p.Mounts[1])
	wantMounts := [][]string{
		{"--distribution", "berth-default", "--user", "root", "--exec", "/bin/mkdir", "-p", "/mnt/berth/data"},
		{"--distribution", "berth-default", "--user", "root", "--exec", "/bin/mount", "-t", "drvfs", "-o", "ro", `\\nas\data`, "/mnt/berth/data"},
	}
	if !reflect.DeepEqual(mounts, wantMounts) {
		t.Errorf("mount args %q", mounts)
	}
	if got := p.MountArgs(p.Mounts[0])[1]; got[9] != "rw" {
		t.Errorf("rw mount %q", got)
	}
}

func TestBuildPlanOptions(t *testing.T) {
	opts := wslOpts
	opts.Distro, opts.WSLExe, opts.ShareRoot = "my.distro", `C:\Windows\System32\wsl.exe`, "/host"
	cfg := wslConfig()
	cfg.Shares = []vm.Share{{Tag: "h", HostPath: "D:/src"}}
	p, err := BuildPlan(cfg, opts, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Distro != "my.distro" || p.WSLExe != opts.WSLExe || p.Mounts[0].Target != "/host/h" || len(p.Notes) != 0 {
		t.Fatalf("plan %+v", p)
	}
}

func TestBuildPlanRejects(t *testing.T) {
	f, _ := os.Open(os.DevNull)
	defer f.Close()
	for _, tc := range []struct {
		name        string
		mod         func(*vm.Config, *Options)
		err         string
		unsupported bool
	}{
		{"arm64 guest on amd64", func(c *vm.Config, o *Options) { c.Arch = "arm64" }, "host's architecture", true},
		{"tcg", func(c *vm.Config, o *Options) { c.Accel = "tcg" }, "Hyper-V", true},
		{"no vsock", func(c *vm.Config, o *Options) { c.Agent = vm.AgentChannel{SerialName: "x"} }, "vsock", true},
		{"nic", func(c *vm.Config, o *Options) { c.NICs = []vm.NIC{{Conn: f}} }, "network", true},
		{"disk", func(c *vm.Config, o *Options) { c.Disks = []vm.Disk{{Path: "d.img"}} }, "ext4.vhdx", true},
		{"no install dir", func(c *vm.Config, o *Options) { o.InstallDir = "" }, "install directory", false},
		{"bad distro", func(c *vm.Config, o *Options) { o.Distro = "a b" }, "invalid WSL distribution name", false},
		{"bad name", func(c *vm.Config, o *Options) { c.Name = "X Y" }, "invalid WSL distribution name", false},
		{"posix share", func(c *vm.Config, o *Options) { c.Shares = []vm.Share{{Tag: "a", HostPath: "/home/me"}} }, "not an absolute Windows path", false},
		{"relative share", func(c *vm.Config, o *Options) { c.Shares = []vm.Share{{Tag: "a", HostPath: `Users\me`}} }, "not an absolute Windows path", false},
		{"bad tag", func(c *vm.Config, o *Options) { c.Shares = []vm.Share{{Tag: "../x", HostPath: `C:\x`}} }, "tag", false},
		{"dup tag", func(c *vm.Config, o *Options) {
			c.Shares = []vm.Share{{Tag: "a", HostPath: `C:\x`}, {Tag: "a", HostPath: `C:\y`}}
		}, "used twice", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, opts := wslConfig(), wslOpts
			tc.mod(&cfg, &opts)
			_, err := BuildPlan(cfg, opts, "amd64")
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if errors.Is(err, vm.ErrUnsupported) != tc.unsupported {
				t.Fatalf("errors.Is(ErrUnsupported) = %v for %v", !tc.unsupported, err)
			}
		})
	}
}

func TestIsWindowsAbs(t *testing.T) {
	for path, want := range map[string]bool{
		`C:\Users\me`: true, `c:/src`: true, `D:\`: true, `\\server\share`: true,
		`C:`: false, `C:relative`: false, `\Users`: false, `/home/me`: false, `relative`: false,
		`\\?\C:\x`: false, `\\.\pipe\x`: false, ``: false, `1:\x`: false,
	} {
		if got := IsWindowsAbs(path); got != want {
			t.Errorf("IsWindowsAbs(%q) = %v", path, got)
		}
	}
}

func utf16le(s string, bom bool) []byte {
	var b []byte
	if bom {
		b = append(b, 0xff, 0xfe)
	}
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u), byte(u>>8))
	}
	return b
}

func TestDecodeOutput(t *testing.T) {
	msg := "Die Verteilung wurde erfolgreich beendet. – ok\r\n"
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"utf16", utf16le(msg, false), msg},
		{"utf16 bom", utf16le(msg, true), msg},
		{"utf8", []byte(msg), msg},
		{"utf8 even length", []byte("ab"), "ab"},
		{"empty", nil, ""},
	} {
		if got := DecodeOutput(tc.in); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

const (
	distroGUID = "{5a3d0e1c-8f3b-4c1e-9d5a-2b7c8e9f0a1b}"
	vmGUID     = "9B1E3C5A-7D2F-4E6A-8B0C-1D2E3F4A5B6C"
)

// A command line as WSL 2.x starts wslhost.exe (shape from Lima's parser and WSL's source).
var wslhostLine = `"C:\Program Files\WSL\wslhost.exe" --distro-id ` + distroGUID + ` --vm-id {` + vmGUID + `} --handle 2148 --event 2152 --parent 2156`

func TestParseProcessCommandLinesAndFindVMID(t *testing.T) {
	other := `"C:\Program Files\WSL\wslhost.exe" --distro-id {11111111-2222-3333-4444-555555555555} --vm-id {aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee} --handle 1`
	arr := `[{"CommandLine":` + jsonString(other) + `},{"CommandLine":null},{"CommandLine":` + jsonString(wslhostLine) + `}]`
	lines, err := ParseProcessCommandLines([]byte(arr))
	if err != nil || len(lines) != 2 {
		t.Fatalf("array: %q %v", lines, err)
	}
	id, err := FindVMID(lines, distroGUID)
	if err != nil || id != strings.ToLower(vmGUID) {
		t.Fatalf("FindVMID = %q, %v", id, err)
	}
	// One process: ConvertTo-Json writes an object, not an array (Lima's parser fails here).
	one, err := ParseProcessCommandLines([]byte("\ufeff{\"CommandLine\":" + jsonString(wslhostLine) + "}\r\n"))
	if err != nil || len(one) != 1 {
		t.Fatalf("object: %q %v", one, err)
	}
	if id, err := FindVMID(one, strings.Trim(strings.ToUpper(distroGUID), "{}")); err != nil || id != strings.ToLower(vmGUID) {
		t.Fatalf("FindVMID upper-case bare id = %q, %v", id, err)
	}
	// No process: no output at all.
	if none, err := ParseProcessCommandLines([]byte("  \r\n")); err != nil || none != nil {
		t.Fatalf("none: %q %v", none, err)
	}
	if _, err := FindVMID(lines, "{99999999-2222-3333-4444-555555555555}"); err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Fatalf("missing distro: %v", err)
	}
	if _, err := ParseProcessCommandLines([]byte("Get-CimInstance : Access denied")); err == nil {
		t.Fatal("garbage parsed")
	}
	if !GUIDPattern.MatchString(vmGUID) || !GUIDPattern.MatchString("{"+vmGUID+"}") || GUIDPattern.MatchString("Microsoft") {
		t.Fatal("GUIDPattern")
	}
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

func TestPowerShellArgs(t *testing.T) {
	args := PowerShellArgs(WSLHostScript)
	if args[len(args)-2] != "-EncodedCommand" {
		t.Fatalf("args %q", args)
	}
	raw, err := base64.StdEncoding.DecodeString(args[len(args)-1])
	if err != nil {
		t.Fatal(err)
	}
	if got := DecodeOutput(raw); got != WSLHostScript {
		t.Fatalf("decoded %q", got)
	}
}

func TestNewOffWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("on Windows New is real")
	}
	if _, err := New(wslConfig(), wslOpts, nil); !errors.Is(err, vm.ErrUnsupported) {
		t.Fatalf("New = %v", err)
	}
}
