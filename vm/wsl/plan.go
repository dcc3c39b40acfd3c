// Package wsl is the Windows driver: the guest root is imported as a WSL2 distribution and
// berth-agent runs inside it; the host reaches the agent over a Hyper-V socket.
//
// Layout: this file and pipe.go (no build tag) hold every mapping and parser and are
// unit-tested on Linux; driver_windows.go runs wsl.exe and dials with go-winio;
// driver_other.go makes New fail elsewhere.
//
// # How it differs from a VM driver
//
// WSL2 runs all distributions in one shared utility VM with Microsoft's kernel and its own
// init (/init is PID 1, or systemd when /etc/wsl.conf enables it). So:
//   - berth-agent is an ordinary process started with `wsl.exe -d <distro> -u root --exec
//     /usr/local/bin/berth-agent serve --vsock`, not PID 1: it must not load modules, mount
//     the root, configure eth0 (WSL's NAT or mirrored networking does that), set the clock
//     or power the VM off; it starts containerd/dockerd and serves the agent channel. The
//     wsl.exe process lives as long as the agent and keeps the distro running; its exit is
//     the driver's exit event.
//   - kernel, initrd, command line, CPU and memory are WSL's (CPU and memory are global
//     settings in %UserProfile%\.wslconfig shared by all distributions); the driver ignores
//     them and says so in Plan.Notes.
//   - there are no NICs (WSL provides the network) and no extra disks: the distribution's
//     own ext4.vhdx under Options.InstallDir holds /var/lib/docker and survives stop and
//     crash; it is only removed by `wsl.exe --unregister`. Config.NICs and Config.Disks are
//     rejected.
//   - shares are drvfs mounts (Windows paths → /mnt/berth/<tag>) that the driver mounts
//     before it starts the agent.
//   - the agent's vsock port lives in the shared VM, so two instances (or another product's
//     guest service) cannot both listen on the same port: hostd must give each WSL instance
//     its own Agent.VsockPort and pass it to the agent (Options.AgentCommand).
//
// # Agent channel: Hyper-V sockets
//
// The guest listens with AF_VSOCK on Agent.VsockPort. The host dials AF_HYPERV at (VM id,
// service id), where the service id is the vsock port mapped into the
// xxxxxxxx-FACB-11E6-BD58-64006A7986D3 template (winio.VsockServiceID). The VM id of WSL's
// utility VM is not published; like Lima, the driver finds the distribution's id in
// HKCU\Software\Microsoft\Windows\CurrentVersion\Lxss and the VM id on the command line of
// the wslhost.exe process serving it (`--vm-id {GUID}`); if that fails it falls back to the
// compute systems listed in HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\
// HostComputeService\VolatileStore\ComputeSystem (Rancher Desktop's approach) and takes
// the first that accepts a connection on the port.
//
// Registration of the service id under HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\
// Virtualization\GuestCommunicationServices\<service GUID> (with an ElementName value) is
// needed only for a LISTENER on the host that guests connect to, and writing it needs
// administrator rights. Dialing from the host into a listener in the guest, which is all this
// driver does, needs no registration and no elevation. If hostd ever listens for the guest
// (e.g. a gvisor-tap-vsock network over hvsock), that port must be registered by the
// installer.
package wsl

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf16"

	"github.com/berth-dev/berth/vm"
)

// Options are the WSL specifics that vm.Config does not carry.
type Options struct {
	// Distro is the WSL distribution name; empty means "berth-<instance>".
	Distro string
	// InstallDir is where `wsl --import` puts the distribution's ext4.vhdx (for example
	// %LOCALAPPDATA%\berth\<instance>\wsl). Required.
	InstallDir string
	// RootfsTar is the guest root tarball imported when the distribution does not exist
	// yet. Required for the first start.
	RootfsTar string
	// AgentCommand is the agent's argv inside the distribution; empty means
	// DefaultAgentCommand. The agent must listen on vm.Config.Agent.VsockPort.
	AgentCommand []string
	// WSLExe is the wsl.exe to run; empty means "wsl.exe" from PATH.
	WSLExe string
	// ShareRoot is the guest directory under which shares are mounted by tag; empty means
	// DefaultShareRoot.
	ShareRoot string
}

// DefaultAgentCommand starts the agent in its WSL mode.
var DefaultAgentCommand = []string{"/usr/local/bin/berth-agent", "serve", "--vsock"}

// DefaultShareRoot is where drvfs shares are mounted: /mnt/berth/<tag>.
const DefaultShareRoot = "/mnt/berth"

// Plan is what the driver will run.
type Plan struct {
	Distro     string
	InstallDir string
	RootfsTar  string
	WSLExe     string
	VsockPort  uint32
	ConsoleLog string // receives the agent's stdout and stderr
	Mounts     []Mount
	Notes      []string // ignored settings, for the log
}

// Mount is one drvfs share.
type Mount struct {
	Tag      string
	Source   string // Windows path, e.g. C:\Users\me
	Target   string // guest path
	ReadOnly bool
}

var distroRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// BuildPlan maps cfg and opts onto WSL for a host of hostArch. It rejects what WSL cannot do.
func BuildPlan(cfg vm.Config, opts Options, hostArch string) (Plan, error) {
	if cfg.Name == "" {
		return Plan{}, errors.New("the VM has no name")
	}
	p := Plan{
		Distro:     opts.Distro,
		InstallDir: opts.InstallDir,
		RootfsTar:  opts.RootfsTar,
		WSLExe:     opts.WSLExe,
		VsockPort:  cfg.Agent.VsockPort,
		ConsoleLog: cfg.ConsoleLog,
	}
	if p.Distro == "" {
		p.Distro = "berth-" + cfg.Name
	}
	if !distroRE.MatchString(p.Distro) {
		return Plan{}, fmt.Errorf("invalid WSL distribution name %q", p.Distro)
	}
	if p.WSLExe == "" {
		p.WSLExe = "wsl.exe"
	}
	if p.InstallDir == "" {
		return Plan{}, errors.New("wsl: no install directory for the distribution")
	}
	if cfg.Arch != hostArch {
		return Plan{}, fmt.Errorf("WSL runs guests of the host's architecture only: guest %q on a %q host: %w", cfg.Arch, hostArch, vm.ErrUnsupported)
	}
	switch cfg.Accel {
	case "", "auto", "whpx":
	default:
		return Plan{}, fmt.Errorf("accelerator %q with the WSL driver (WSL2 always runs on Hyper-V): %w", cfg.Accel, vm.ErrUnsupported)
	}
	if cfg.Agent.VsockPort == 0 {
		return Plan{}, fmt.Errorf("the WSL driver reaches the agent over vsock (Hyper-V sockets) but no vsock port is configured: %w", vm.ErrUnsupported)
	}
	if len(cfg.NICs) > 0 {
		return Plan{}, fmt.Errorf("WSL provides the network itself; %d NIC(s) requested: %w", len(cfg.NICs), vm.ErrUnsupported)
	}
	if len(cfg.Disks) > 0 {
		return Plan{}, fmt.Errorf("WSL keeps the guest's data in the distribution's own ext4.vhdx; %d extra disk(s) requested: %w", len(cfg.Disks), vm.ErrUnsupported)
	}
	for _, ignored := range []struct {
		what string
		set  bool
	}{
		{"kernel", cfg.Kernel != ""},
		{"initrd", cfg.Initrd != ""},
		{"kernel command line", cfg.CmdLine != ""},
	} {
		if ignored.set {
			p.Notes = append(p.Notes, fmt.Sprintf("%s ignored: WSL boots its own kernel", ignored.what))
		}
	}
	if cfg.CPUs > 0 || cfg.MemoryMiB > 0 {
		p.Notes = append(p.Notes, "cpus and memory ignored: WSL sets them for all distributions in %UserProfile%\\.wslconfig ([wsl2] processors=, memory=)")
	}

	root := opts.ShareRoot
	if root == "" {
		root = DefaultShareRoot
	}
	tags := map[string]bool{}
	for i, s := range cfg.Shares {
		if !tagRE.MatchString(s.Tag) {
			return Plan{}, fmt.Errorf("share %d: tag %q: use letters, digits, '.', '_' and '-'", i, s.Tag)
		}
		if tags[s.Tag] {
			return Plan{}, fmt.Errorf("share %d: tag %q used twice", i, s.Tag)
		}
		tags[s.Tag] = true
		if !IsWindowsAbs(s.HostPath) {
			return Plan{}, fmt.Errorf("share %q: %q is not an absolute Windows path (C:\\... or \\\\server\\share)", s.Tag, s.HostPath)
		}
		p.Mounts = append(p.Mounts, Mount{Tag: s.Tag, Source: s.HostPath, Target: root + "/" + s.Tag, ReadOnly: s.ReadOnly})
	}
	return p, nil
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// IsWindowsAbs reports whether path is an absolute Windows path with a drive letter
// (C:\x or C:/x) or a UNC path (\\server\share). It works on every GOOS.
func IsWindowsAbs(path string) bool {
	if len(path) >= 3 && isLetter(path[0]) && path[1] == ':' && (path[2] == '\\' || path[2] == '/') {
		return true
	}
	return len(path) > 2 && strings.HasPrefix(path, `\\`) && path[2] != '\\' && path[2] != '?' && path[2] != '.'
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// ImportArgs is `wsl.exe --import <distro> <dir> <rootfs.tar> --version 2`.
func (p Plan) ImportArgs() []string {
	return []string{"--import", p.Distro, p.InstallDir, p.RootfsTar, "--version", "2"}
}

// TerminateArgs is `wsl.exe --terminate <distro>`.
func (p Plan) TerminateArgs() []string { return []string{"--terminate", p.Distro} }

// UnregisterArgs is `wsl.exe --unregister <distro>`; it deletes the distribution and its
// disk, so only `berth delete --data` may run it.
func (p Plan) UnregisterArgs() []string { return []string{"--unregister", p.Distro} }

// exec runs argv in the distribution as root without a shell. wsl.exe's "--" form hands the
// rest of its command line to the login shell, which would expand $ and eat the
// backslashes of Windows paths; --exec passes the arguments as they are.
func (p Plan) exec(argv ...string) []string {
	return append([]string{"--distribution", p.Distro, "--user", "root", "--exec"}, argv...)
}

// AgentArgs starts the agent: wsl.exe -d <distro> -u root --exec <agent...>.
func (p Plan) AgentArgs(agent []string) []string {
	if len(agent) == 0 {
		agent = DefaultAgentCommand
	}
	return p.exec(agent...)
}

// MountArgs are the wsl.exe invocations that mount m: mkdir, then mount -t drvfs.
func (p Plan) MountArgs(m Mount) [][]string {
	opts := "rw"
	if m.ReadOnly {
		opts = "ro"
	}
	return [][]string{
		p.exec("/bin/mkdir", "-p", m.Target),
		p.exec("/bin/mount", "-t", "drvfs", "-o", opts, m.Source, m.Target),
	}
}

// DecodeOutput turns wsl.exe output into text. wsl.exe writes its own messages (not those
// of Linux programs) in UTF-16LE unless WSL_UTF8=1 is set, which older versions ignore.
func DecodeOutput(b []byte) string {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe {
		b = b[2:]
		return decodeUTF16LE(b)
	}
	if len(b) >= 2 && len(b)%2 == 0 {
		zeros := 0
		for i := 1; i < len(b); i += 2 {
			if b[i] == 0 {
				zeros++
			}
		}
		if zeros*2 >= len(b)/2 { // most high bytes zero: UTF-16LE of mostly ASCII
			return decodeUTF16LE(b)
		}
	}
	return string(b)
}

func decodeUTF16LE(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
	}
	return string(utf16.Decode(u))
}

// ParseProcessCommandLines reads the JSON of
// `Get-CimInstance Win32_Process -Filter "name = 'wslhost.exe'" | Select CommandLine |
// ConvertTo-Json`: an array of {"CommandLine": ...}, a single object when there is one
// process, and nothing at all when there is none.
func ParseProcessCommandLines(out []byte) ([]string, error) {
	s := strings.TrimSpace(strings.TrimPrefix(string(out), "\ufeff"))
	if s == "" || s == "null" {
		return nil, nil
	}
	type proc struct{ CommandLine *string }
	var list []proc
	if strings.HasPrefix(s, "{") {
		var one proc
		if err := json.Unmarshal([]byte(s), &one); err != nil {
			return nil, fmt.Errorf("parsing process list: %w", err)
		}
		list = []proc{one}
	} else if err := json.Unmarshal([]byte(s), &list); err != nil {
		return nil, fmt.Errorf("parsing process list: %w", err)
	}
	var lines []string
	for _, p := range list {
		if p.CommandLine != nil { // null for processes of other users without rights
			lines = append(lines, *p.CommandLine)
		}
	}
	return lines, nil
}

var vmIDRE = regexp.MustCompile(`(?i)--vm-id[\s=]+\{?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}?`)

// FindVMID returns the utility VM id from the wslhost.exe command line that serves
// distroID (the distribution's GUID from the Lxss registry key, with or without braces).
func FindVMID(cmdlines []string, distroID string) (string, error) {
	id := strings.ToLower(strings.Trim(distroID, "{}"))
	if id == "" {
		return "", errors.New("empty distribution id")
	}
	for _, line := range cmdlines {
		if !strings.Contains(strings.ToLower(line), id) {
			continue
		}
		if m := vmIDRE.FindStringSubmatch(line); m != nil {
			return strings.ToLower(m[1]), nil
		}
	}
	return "", fmt.Errorf("no wslhost.exe process with a --vm-id serves distribution {%s}; is it running?", id)
}

// GUIDPattern matches a bare or braced GUID, e.g. a ComputeSystem registry subkey.
var GUIDPattern = regexp.MustCompile(`^\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?$`)

// WSLHostScript lists the command lines of the wslhost.exe processes as JSON.
const WSLHostScript = `Get-CimInstance -ClassName Win32_Process -Filter "Name = 'wslhost.exe'" | Select-Object CommandLine | ConvertTo-Json -Compress`

// PowerShellArgs runs script with powershell.exe -EncodedCommand (base64 of UTF-16LE), which
// sidesteps Windows command-line quoting entirely.
func PowerShellArgs(script string) []string {
	u := utf16.Encode([]rune(script))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		b[2*i], b[2*i+1] = byte(c), byte(c>>8)
	}
	return []string{"-NoLogo", "-NoProfile", "-NonInteractive", "-EncodedCommand", base64.StdEncoding.EncodeToString(b)}
}
