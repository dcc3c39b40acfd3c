package vm

import (
	"fmt"
	"strings"
)

// Host describes what accelerator choice depends on. It is a value so the choice is
// unit-tested for every platform on any machine.
type Host struct {
	GOOS      string
	GOARCH    string
	CPUInfo   string // contents of /proc/cpuinfo (Linux)
	KVMUsable bool   // /dev/kvm opened read-write
}

// ChooseAccel picks the QEMU accelerator for a guest of guestArch on h. forced, when not
// empty or "auto", wins if it can work at all.
//
// KVM needs more than /dev/kvm: on a nested, paravirtualized host /dev/kvm opens and
// KVM_CREATE_VM succeeds, yet without vmx/svm in the CPU flags a normal kernel hangs
// forever. Lima's probe only checks the device file and picks the broken accelerator there.
func ChooseAccel(h Host, guestArch, forced string) (string, error) {
	native := h.GOARCH == guestArch
	switch forced {
	case "", "auto":
	case "tcg":
		return "tcg", nil
	case "kvm":
		if h.GOOS != "linux" || !h.KVMUsable || !native {
			return "", fmt.Errorf("accelerator kvm requested but unavailable: needs a linux host, a read-write /dev/kvm and a %s guest on a %s host", h.GOARCH, h.GOARCH)
		}
		return "kvm", nil
	case "hvf":
		if h.GOOS != "darwin" || !native {
			return "", fmt.Errorf("accelerator hvf requested but unavailable: needs macOS and a guest of the host's architecture")
		}
		return "hvf", nil
	case "whpx":
		// Hyper-V is what the WSL2 driver runs on; QEMU is not a driver on Windows.
		return "", fmt.Errorf("accelerator whpx is Hyper-V, which berth uses through WSL2 on Windows; QEMU takes kvm, hvf or tcg")
	default:
		return "", fmt.Errorf("unknown accelerator %q (want auto, kvm, hvf, whpx or tcg)", forced)
	}
	if !native {
		return "tcg", nil
	}
	switch h.GOOS {
	case "linux":
		if h.KVMUsable && hasVirtFlags(h.CPUInfo, h.GOARCH) {
			return "kvm", nil
		}
	case "darwin":
		return "hvf", nil
	}
	return "tcg", nil
}

func hasVirtFlags(cpuinfo, arch string) bool {
	if arch != "amd64" {
		// arm64 Linux hosts expose no such flag; /dev/kvm opening is the signal there.
		return true
	}
	for _, line := range strings.Split(cpuinfo, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
