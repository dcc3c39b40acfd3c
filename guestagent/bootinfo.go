package guestagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BootInfoPath is where PID 1 leaves the result of Boot for the serve process.
const BootInfoPath = "/run/berth/boot.json"

// BootInfo is what Boot found and did. PID 1 writes it to BootInfoPath before it starts
// the serve process.
type BootInfo struct {
	// KernelBoot is the guest uptime when the agent started as /init: the kernel's share
	// of the boot time.
	KernelBoot time.Duration `json:"kernelBoot"`
	// BootDone is the guest uptime when Boot finished (modules, disks, network).
	BootDone time.Duration `json:"bootDone"`
	// IP is the guest's IPv4 address from DHCP; empty when the network is not configured.
	IP string `json:"ip,omitempty"`
	// DataDevice and RootDevice are the block devices (/dev/vdX) found for each disk.
	DataDevice string `json:"dataDevice"`
	RootDevice string `json:"rootDevice"`
	// Formatted is true when the data disk was empty and got a new file system this boot.
	Formatted bool `json:"formatted"`
	// Resized is true when the data file system was grown to a larger disk this boot.
	Resized bool `json:"resized,omitempty"`
}

// ReadBootInfo reads the file PID 1 wrote.
func ReadBootInfo(path string) (*BootInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read boot info: %w", err)
	}
	var bi BootInfo
	if err := json.Unmarshal(b, &bi); err != nil {
		return nil, fmt.Errorf("failed to parse boot info %s: %w", path, err)
	}
	return &bi, nil
}

// writeBootInfo writes bi atomically so the serve process never reads half a file.
func writeBootInfo(path string, bi *BootInfo) error {
	b, err := json.MarshalIndent(bi, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Cmdline is the kernel command line as key → value; a bare word maps to "".
type Cmdline map[string]string

// ParseCmdline splits a kernel command line (the contents of /proc/cmdline). Double
// quotes group words the way the kernel does (`key="a b"`); a later duplicate wins, as
// for the kernel's own parameters.
func ParseCmdline(s string) Cmdline {
	c := Cmdline{}
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		c[k] = v
	}
	return c
}

// Flag reports whether a boolean parameter is on: present bare, or set to 1/y/yes/true/on.
func (c Cmdline) Flag(name string) bool {
	v, ok := c[name]
	if !ok {
		return false
	}
	switch strings.ToLower(v) {
	case "", "1", "y", "yes", "true", "on":
		return true
	}
	return false
}

// Kernel command line parameters the agent understands.
const (
	// CmdlineBare powers the guest off right after /proc is mounted: the boot benchmark
	// times a bare kernel boot with the same kernel and initramfs.
	CmdlineBare = "berth.bare"
	// CmdlineDebug turns on debug logging; PID 1 passes it to the serve process as
	// BERTH_DEBUG=1.
	CmdlineDebug = "berth.debug"
	// CmdlineTime is the host's clock (Unix seconds) when it built the command line. A guest
	// without a usable RTC (vz) starts in 1970; moving the clock forward to this early
	// keeps e2fsck and TLS sane until the host sets the exact time over the agent channel.
	CmdlineTime = "berth.time"
)

// ReadCmdline reads /proc/cmdline.
func ReadCmdline() (Cmdline, error) {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return nil, fmt.Errorf("failed to read the kernel command line: %w", err)
	}
	return ParseCmdline(string(b)), nil
}

// errNotGuest is what the guest entry points return on a system that cannot be the guest.
var errNotGuest = errors.New("berth-agent can only run as the init of the Linux guest")

// The implementations live in the Linux-only files, which set these; elsewhere they stay
// nil so the package (and the agent's command) still builds for host-side checks.
var (
	initImpl     func(*slog.Logger)
	bootImpl     func(*slog.Logger) (*BootInfo, error)
	powerOffImpl func() error
)

// Init is the guest's PID 1: it mounts the kernel file systems, runs Boot, then starts
// and supervises `<self> serve`, reaps orphans and handles power-off requests (SIGTERM,
// SIGINT, SIGPWR and the ACPI/GPIO power button). It never returns; when Boot fails it
// prints "berth-agent: boot failed: <reason>" on the console and powers the guest off.
func Init(log *slog.Logger) {
	if initImpl == nil {
		log.Error("cannot run as init", "err", errNotGuest)
		os.Exit(1)
	}
	initImpl(log)
}

// Boot prepares the guest from the initramfs: loads the boot modules, mounts the root
// image under a tmpfs overlay, switches root into it, mounts or formats the data disk,
// configures the kernel and the network, and writes BootInfoPath. It must run as PID 1
// with /proc, /sys and /dev mounted.
func Boot(log *slog.Logger) (*BootInfo, error) {
	if bootImpl == nil {
		return nil, errNotGuest
	}
	return bootImpl(log)
}

// PowerOff syncs, unmounts the data disk and everything mounted from it (best effort) and
// powers the guest off. It works from any root process. It returns only if the power-off
// failed, after printing why on stderr.
func PowerOff() {
	err := errNotGuest
	if powerOffImpl != nil {
		err = powerOffImpl()
	}
	fmt.Fprintf(os.Stderr, "berth-agent: power off failed: %v\n", err)
}
