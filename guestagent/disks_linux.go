//go:build linux

package guestagent

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// blockDev is a disk as sysfs shows it.
type blockDev struct {
	Name   string // "vda"
	Serial string // virtio-blk serial, "" when the hypervisor gave none
}

// listVirtioDisks lists /sys/block/vd* in probe order (vda, vdb, …, vdz, vdaa).
func listVirtioDisks(sysBlock string) ([]blockDev, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, err
	}
	var devs []blockDev
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "vd") {
			continue
		}
		serial, _ := os.ReadFile(filepath.Join(sysBlock, e.Name(), "serial"))
		devs = append(devs, blockDev{Name: e.Name(), Serial: strings.TrimSpace(string(serial))})
	}
	sortDisks(devs)
	return devs, nil
}

func sortDisks(devs []blockDev) {
	// vda < vdb < … < vdz < vdaa: by length, then by name.
	slices.SortFunc(devs, func(a, b blockDev) int {
		return cmp.Or(cmp.Compare(len(a.Name), len(b.Name)), cmp.Compare(a.Name, b.Name))
	})
}

// pickDisks finds the root and data disks: by serial when the hypervisor sets them, else
// by order (first = root, second = data) when no disk has a serial at all (vz before
// macOS 12.3). Either result may be empty when that disk is not there (yet).
func pickDisks(devs []blockDev) (root, data string, err error) {
	anySerial := false
	for _, d := range devs {
		switch d.Serial {
		case RootDiskSerial:
			root = d.Name
		case DataDiskSerial:
			data = d.Name
		}
		if d.Serial != "" {
			anySerial = true
		}
	}
	if root != "" || data != "" {
		return root, data, nil
	}
	if anySerial {
		var seen []string
		for _, d := range devs {
			seen = append(seen, d.Name+"="+strconv.Quote(d.Serial))
		}
		return "", "", fmt.Errorf("no disk has serial %q (disks: %s)", RootDiskSerial, strings.Join(seen, ", "))
	}
	if len(devs) > 0 {
		root = devs[0].Name
	}
	if len(devs) > 1 {
		data = devs[1].Name
	}
	return root, data, nil
}

// waitForDisks polls until both disks and their device nodes exist. Virtio devices are
// probed asynchronously after their modules load, so they can appear a little late.
func waitForDisks(log *slog.Logger, sysBlock string, timeout time.Duration) (root, data string, err error) {
	deadline := time.Now().Add(timeout)
	var devs []blockDev
	for {
		devs, err = listVirtioDisks(sysBlock)
		if err == nil {
			root, data, err = pickDisks(devs)
		}
		if err == nil && root != "" && data != "" && exists("/dev/"+root) && exists("/dev/"+data) {
			return "/dev/" + root, "/dev/" + data, nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return "", "", fmt.Errorf("failed to find the disks: %w", err)
	}
	log.Error("disks seen", "disks", devs)
	if root == "" {
		return "", "", fmt.Errorf("no root image disk after %s: no virtio disk with serial %q (is virtio_blk loaded?)", timeout, RootDiskSerial)
	}
	return "", "", fmt.Errorf("no data disk after %s: no virtio disk with serial %q", timeout, DataDiskSerial)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
