// Package qemu runs the berth VM with QEMU: KVM on Linux where the CPU allows it, HVF on
// macOS, TCG anywhere else.
package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/vm"
)

// Files the driver keeps in Config.RuntimeDir.
const (
	qmpSocket       = "qmp.sock"
	qmpEventsSocket = "qmp-events.sock" // a second monitor, held open by qmpMonitor
	agentSocket     = "agent.sock"
)

// netFD is the descriptor number the first NIC's datagram socket has in the QEMU process:
// exec.Cmd.ExtraFiles starts at 3.
const netFD = 3

// Binary returns the QEMU system emulator for a guest architecture.
func Binary(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "qemu-system-x86_64", nil
	case "arm64":
		return "qemu-system-aarch64", nil
	}
	return "", fmt.Errorf("no QEMU for guest architecture %q", arch)
}

// Args builds QEMU's command line. It is a pure function of the config and the chosen
// accelerator so every mapping is unit-tested.
func Args(c vm.Config, accel string) ([]string, error) {
	if c.Agent.SerialName == "" {
		// vhost-vsock needs /dev/vhost-vsock on the host; the serial port works everywhere.
		return nil, fmt.Errorf("qemu driver needs a virtio-serial agent channel: %w", vm.ErrUnsupported)
	}
	a := []string{
		"-name", escapeComma("berth-" + c.Name),
		"-nodefaults", "-nographic", "-no-reboot", "-no-user-config",
		"-smp", strconv.Itoa(c.CPUs),
		"-m", strconv.FormatUint(c.MemoryMiB, 10),
	}
	console := "ttyS0"
	machine := ""
	switch c.Arch {
	case "amd64":
		// q35 boots reliably under TCG; microvm can hang calibrating the TSC there.
		machine = "q35"
	case "arm64":
		machine = "virt"
		console = "ttyAMA0"
	default:
		return nil, fmt.Errorf("unsupported guest architecture %q", c.Arch)
	}
	for _, s := range c.Shares {
		if s.Device == vm.ShareVirtiofs {
			// vhost-user devices need guest RAM that virtiofsd can map.
			a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", c.MemoryMiB))
			machine += ",memory-backend=mem"
			break
		}
	}
	a = append(a, "-machine", machine)
	switch accel {
	case "tcg":
		// arm64 guests get one host thread per vCPU; the architected pointer-authentication
		// algorithm costs a lot under emulation, the implementation-defined one is as correct
		// for the guest and much faster. x86 guests get one thread for all vCPUs: with one
		// per vCPU, QEMU 7.2 races with the guest kernel's live patching of static keys
		// (int3-based text_poke), and a 6.12 guest oopsed in about one boot of ten
		// (docs/image.md). KVM, HVF and vz are not affected.
		thread, cpu := "single", "max"
		if c.Arch == "arm64" {
			thread, cpu = "multi", "max,pauth-impdef=on"
		}
		a = append(a, "-accel", "tcg,thread="+thread, "-cpu", cpu)
	case "kvm", "hvf":
		a = append(a, "-accel", accel, "-cpu", "host")
	default:
		return nil, fmt.Errorf("unknown accelerator %q", accel)
	}
	cmdline := strings.TrimSpace("console=" + console + " " + c.CmdLine)
	if accel == "tcg" {
		// TCG executes no instruction speculatively, so the guest kernel's side-channel
		// mitigations (retpolines, RSB filling, barriers on every user copy) protect
		// against nothing and only cost emulated instructions on each syscall and
		// context switch. Under KVM and HVF the real CPU speculates: they stay on.
		cmdline += " mitigations=off"
	}
	a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", cmdline)

	a = append(a,
		"-chardev", "file,id=console,path="+escapeComma(c.ConsoleLog),
		"-serial", "chardev:console",
		// QMP as an explicit chardev: `-qmp unix:PATH` guesses the option name from the
		// first '=' and so misreads a path holding one.
		"-chardev", "socket,id=qmp,path="+escapeComma(filepath.Join(c.RuntimeDir, qmpSocket))+",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		// QMP serves one client per monitor: the stop path dials the first, qmpMonitor
		// holds this one for the VM's life to hear BLOCK_IO_ERROR (a full host disk).
		"-chardev", "socket,id=qmpev,path="+escapeComma(filepath.Join(c.RuntimeDir, qmpEventsSocket))+",server=on,wait=off",
		"-mon", "chardev=qmpev,mode=control",
		"-device", "virtio-rng-pci",
		// Free page reporting (QEMU 5.1+): the guest's virtio_balloon hands pages it freed
		// back in 2 MiB blocks and QEMU discards them, so the host gets them back within
		// seconds without anyone inflating the balloon (docs/resources.md).
		"-device", "virtio-balloon-pci,free-page-reporting=on",
	)
	for i, d := range c.Disks {
		id := fmt.Sprintf("disk%d", i)
		drive := "if=none,id=" + id + ",format=raw,file=" + escapeComma(d.Path)
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			// Free space in the sparse image when the guest trims.
			drive += ",discard=unmap"
		}
		dev := "virtio-blk-pci,drive=" + id
		if d.ID != "" {
			dev += ",serial=" + escapeComma(d.ID)
		}
		a = append(a, "-drive", drive, "-device", dev)
	}
	// NIC i's socket is descriptor netFD+i (driver.go passes them in order); the first is
	// the guest's eth0, a second the cluster network's (docs/cluster.md).
	for i, n := range c.NICs {
		a = append(a,
			"-netdev", fmt.Sprintf("dgram,id=net%d,local.type=fd,local.str=%d", i, netFD+i),
			// No option ROM: iPXE would only slow the firmware down; the kernel is loaded directly.
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,romfile=,mac=%s", i, escapeComma(n.MAC)))
	}
	a = append(a,
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path="+escapeComma(filepath.Join(c.RuntimeDir, agentSocket))+",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name="+escapeComma(c.Agent.SerialName),
	)
	for i, s := range c.Shares {
		if s.Device == vm.ShareVirtiofs {
			a = append(a, "-chardev", fmt.Sprintf("socket,id=vfs%d,path=%s", i, escapeComma(virtiofsSocket(c, i))),
				"-device", fmt.Sprintf("vhost-user-fs-pci,chardev=vfs%d,tag=%s", i, escapeComma(s.Tag)))
			continue
		}
		ro := ""
		if s.ReadOnly {
			ro = ",readonly=on"
		}
		// security_model=none: files keep the host user's ownership, and QEMU's 9p server
		// resolves every path component with O_NOFOLLOW inside the export (CVE-2016-9602).
		a = append(a, "-fsdev", fmt.Sprintf("local,id=fs%d,path=%s,security_model=none%s", i, escapeComma(s.HostPath), ro),
			"-device", fmt.Sprintf("virtio-9p-pci,fsdev=fs%d,mount_tag=%s", i, escapeComma(s.Tag)))
	}
	return a, nil
}

// escapeComma doubles commas, QEMU's escape inside option values. Every value built from
// a path or a name goes through it (a comma in HOME would otherwise end the value and
// start a bogus option); '=' and spaces need no escaping inside a value. Plain arguments
// (-kernel, -initrd, -append) are not option lists and are passed as they are.
// virtiofsSocket is where the virtiofsd of the i-th share listens.
func virtiofsSocket(c vm.Config, i int) string {
	return filepath.Join(c.RuntimeDir, fmt.Sprintf("vfs%d.sock", i))
}

func escapeComma(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// shareDevice: virtiofs needs Debian's virtiofsd, which must run as root; 9p serves the
// share otherwise, and read-only shares always, because this virtiofsd cannot refuse writes
// on the host side while QEMU's 9p server can.
func shareDevice(s vm.Share) string {
	if !s.ReadOnly && hasVirtiofsd() {
		return vm.ShareVirtiofs
	}
	return vm.Share9P
}
