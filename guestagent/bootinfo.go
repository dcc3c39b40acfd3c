package guestagent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// BootInfoPath is where PID 1 leaves the result of its boot (boot_linux.go) for the serve
// process.
const BootInfoPath = "/run/berth/boot.json"

// BootInfo is what the boot found and did. PID 1 writes it to BootInfoPath before it starts
// the serve process.
type BootInfo struct {
	// KernelBoot is the guest uptime when the agent started as /init: the kernel's share
	// of the boot time.
	KernelBoot time.Duration `json:"kernelBoot"`
	// BootDone is the guest uptime when the boot finished (modules, disks, network).
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
