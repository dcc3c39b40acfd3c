package vz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/berth-dev/berth/vm"
)

// This file is the whole vm.Config → Virtualization.framework mapping as plain data. It has
// no build tag and no cgo, so every decision (clamps, command line, device list, what is
// rejected) is unit-tested on Linux; driver_darwin.go only turns a Plan into vz calls.

// RosettaTag is the virtiofs tag of the Rosetta share on Apple silicon. The guest mounts it
// (mount -t virtiofs rosetta /mnt/rosetta) and registers the rosetta binary with
// binfmt_misc to run amd64 binaries.
const RosettaTag = "rosetta"

// ConsoleDevice is the kernel console on vz: the virtio console shows up as hvc0. vz has no
// PL011 (ttyAMA0) or 8250 (ttyS0) UART, so a console= meant for QEMU would print nothing.
const ConsoleDevice = "hvc0"

// DefaultStopGrace bounds a non-forced Stop whose context has no deadline: after it the
// VM is stopped by force.
const DefaultStopGrace = 30 * time.Second

// Limits are Virtualization.framework's allowed ranges. They depend on the host (the CPU
// maximum is the host's core count, the memory maximum follows its RAM), so the darwin code
// reads them from VZVirtualMachineConfiguration at run time.
type Limits struct {
	MinCPUs, MaxCPUs     uint
	MinMemory, MaxMemory uint64 // bytes
}

// Rosetta is the state of Rosetta for Linux on the host
// (VZLinuxRosettaDirectoryShare.availability).
type Rosetta int

const (
	RosettaUnsupported  Rosetta = iota // Intel Mac, macOS < 13, or not reported
	RosettaNotInstalled                // Apple silicon without Rosetta installed
	RosettaInstalled
)

// Host is what the plan depends on besides the config.
type Host struct {
	GOARCH  string // architecture of the host (= of berth hostd)
	Rosetta Rosetta
	Limits  Limits
}

// Plan is everything the darwin code needs to build a VZVirtualMachineConfiguration.
type Plan struct {
	Name string

	// Linux boot loader.
	Kernel  string
	Initrd  string
	CmdLine string

	CPUs        uint
	MemoryBytes uint64

	Disks  []DiskPlan
	NICs   []NICPlan
	Shares []SharePlan // virtiofs, one device per tag; includes the Rosetta share when enabled

	VsockPort  uint32 // the agent's port; the host connects through the VM's socket device
	ConsoleLog string // serial console file (virtio console → hvc0); empty: no console device

	// Always true today; kept explicit so the device list is visible in one place.
	Entropy bool
	Balloon bool

	// Notes say what was adjusted (clamps, console rewrite, Rosetta missing) so hostd can log it.
	Notes []string
}

// DiskPlan is one virtio-blk device.
type DiskPlan struct {
	Path     string
	ReadOnly bool
	// Identifier becomes the virtio-blk serial (VIRTIO_BLK_T_GET_ID, /sys/block/vdX/serial
	// in the guest). Empty: none set.
	Identifier string
}

// NICPlan is one virtio-net device on a file-handle attachment.
type NICPlan struct {
	MAC  net.HardwareAddr // nil: vz picks a random locally administered address
	Conn *os.File         // connected SOCK_DGRAM socket; the caller keeps it open for the VM's life
}

// SharePlan is one virtio-fs device.
type SharePlan struct {
	Tag      string
	HostPath string
	ReadOnly bool
	Rosetta  bool // the share is VZLinuxRosettaDirectoryShare, HostPath is empty
}

// MaxBlockIDLen is VZVirtioBlockDeviceConfiguration.blockDeviceIdentifier's limit (and the
// virtio-blk VIRTIO_BLK_ID_BYTES field size).
const MaxBlockIDLen = 20

// MaxTagLen is the size of the virtio-fs config tag field.
const MaxTagLen = 36

const mib = 1 << 20

// BuildPlan maps cfg onto vz for host. It rejects what vz cannot do (wrapping
// vm.ErrUnsupported) instead of dropping it. It does not touch the file system; see
// CheckKernel for the kernel image check.
func BuildPlan(cfg vm.Config, host Host) (Plan, error) {
	p := Plan{
		Name:       cfg.Name,
		Kernel:     cfg.Kernel,
		Initrd:     cfg.Initrd,
		VsockPort:  cfg.Agent.VsockPort,
		ConsoleLog: cfg.ConsoleLog,
		Entropy:    true,
		Balloon:    true,
	}
	if err := vm.CheckName(cfg.Name); err != nil {
		return Plan{}, err
	}
	if cfg.Arch != host.GOARCH {
		return Plan{}, fmt.Errorf("vz runs guests of the host's architecture only: guest %q on a %q host: %w", cfg.Arch, host.GOARCH, vm.ErrUnsupported)
	}
	switch cfg.Accel {
	case "", "auto", "hvf":
	default:
		return Plan{}, fmt.Errorf("accelerator %q with the vz driver (Virtualization.framework always uses the hypervisor): %w", cfg.Accel, vm.ErrUnsupported)
	}
	if cfg.Kernel == "" {
		return Plan{}, errors.New("vz: kernel path is empty")
	}
	if cfg.Agent.VsockPort == 0 {
		return Plan{}, fmt.Errorf("vz reaches the agent over vsock but no vsock port is configured (virtio-serial %q is for QEMU): %w", cfg.Agent.SerialName, vm.ErrUnsupported)
	}

	var err error
	if p.CPUs, err = clampCPUs(cfg.CPUs, host.Limits, &p.Notes); err != nil {
		return Plan{}, err
	}
	if p.MemoryBytes, err = clampMemory(cfg.MemoryMiB, host.Limits, &p.Notes); err != nil {
		return Plan{}, err
	}
	var dropped []string
	p.CmdLine, dropped = ConsoleCmdLine(cfg.CmdLine)
	for _, d := range dropped {
		if d != "console="+ConsoleDevice {
			p.Notes = append(p.Notes, fmt.Sprintf("kernel command line: %s replaced by console=%s (vz has only a virtio console)", d, ConsoleDevice))
		}
	}

	ids := map[string]bool{}
	for i, d := range cfg.Disks {
		if d.Path == "" {
			return Plan{}, fmt.Errorf("disk %d (%q): empty path", i, d.ID)
		}
		if err := checkBlockID(d.ID); err != nil {
			return Plan{}, fmt.Errorf("disk %d: %w", i, err)
		}
		if d.ID != "" {
			if ids[d.ID] {
				return Plan{}, fmt.Errorf("disk id %q used twice", d.ID)
			}
			ids[d.ID] = true
		}
		p.Disks = append(p.Disks, DiskPlan{Path: d.Path, ReadOnly: d.ReadOnly, Identifier: d.ID})
	}

	for i, n := range cfg.NICs {
		if n.Conn == nil {
			return Plan{}, fmt.Errorf("nic %d: no datagram socket (Conn is nil)", i)
		}
		np := NICPlan{Conn: n.Conn}
		if n.MAC != "" {
			mac, err := net.ParseMAC(n.MAC)
			if err != nil {
				return Plan{}, fmt.Errorf("nic %d: %w", i, err)
			}
			if len(mac) != 6 {
				return Plan{}, fmt.Errorf("nic %d: MAC %q is not a 48-bit address", i, n.MAC)
			}
			if mac[0]&1 != 0 {
				return Plan{}, fmt.Errorf("nic %d: MAC %q is a multicast address", i, n.MAC)
			}
			np.MAC = mac
		}
		p.NICs = append(p.NICs, np)
	}

	rosetta := host.GOARCH == "arm64" && cfg.Arch == "arm64"
	tags := map[string]bool{}
	if rosetta && host.Rosetta == RosettaInstalled {
		tags[RosettaTag] = true
	}
	for i, s := range cfg.Shares {
		if err := checkTag(s.Tag); err != nil {
			return Plan{}, fmt.Errorf("share %d: %w", i, err)
		}
		if tags[s.Tag] {
			if s.Tag == RosettaTag {
				return Plan{}, fmt.Errorf("share %d: tag %q is reserved for Rosetta", i, s.Tag)
			}
			return Plan{}, fmt.Errorf("share %d: tag %q used twice", i, s.Tag)
		}
		tags[s.Tag] = true
		if !strings.HasPrefix(s.HostPath, "/") {
			return Plan{}, fmt.Errorf("share %q: host path %q is not absolute", s.Tag, s.HostPath)
		}
		p.Shares = append(p.Shares, SharePlan{Tag: s.Tag, HostPath: s.HostPath, ReadOnly: s.ReadOnly})
	}
	if rosetta {
		switch host.Rosetta {
		case RosettaInstalled:
			p.Shares = append(p.Shares, SharePlan{Tag: RosettaTag, ReadOnly: true, Rosetta: true})
		case RosettaNotInstalled:
			p.Notes = append(p.Notes, "Rosetta for Linux is not installed, amd64 images will not run; install it with: softwareupdate --install-rosetta --agree-to-license")
		}
	}
	return p, nil
}

// ConsoleCmdLine drops every kernel console= argument from cmdline, adds console=hvc0 and
// returns the dropped arguments. Arguments after "--" belong to init and are kept as they are.
func ConsoleCmdLine(cmdline string) (string, []string) {
	var out, dropped []string
	fields := strings.Fields(cmdline)
	rest := []string(nil)
	for i, f := range fields {
		if f == "--" {
			rest = fields[i:]
			break
		}
		if strings.HasPrefix(f, "console=") {
			dropped = append(dropped, f)
			continue
		}
		out = append(out, f)
	}
	out = append(out, "console="+ConsoleDevice)
	return strings.Join(append(out, rest...), " "), dropped
}

func clampCPUs(n int, l Limits, notes *[]string) (uint, error) {
	if n < 1 {
		return 0, fmt.Errorf("cpus must be at least 1, got %d", n)
	}
	if l.MaxCPUs == 0 || l.MinCPUs > l.MaxCPUs {
		return 0, fmt.Errorf("vz reported no usable CPU range (%d..%d)", l.MinCPUs, l.MaxCPUs)
	}
	c := uint(n)
	switch {
	case c < l.MinCPUs:
		*notes = append(*notes, fmt.Sprintf("cpus raised from %d to vz's minimum %d", c, l.MinCPUs))
		c = l.MinCPUs
	case c > l.MaxCPUs:
		*notes = append(*notes, fmt.Sprintf("cpus lowered from %d to vz's maximum %d (the host's core count)", c, l.MaxCPUs))
		c = l.MaxCPUs
	}
	return c, nil
}

// clampMemory keeps memory inside vz's range and a whole number of MiB, which vz requires.
func clampMemory(memMiB uint64, l Limits, notes *[]string) (uint64, error) {
	if memMiB == 0 {
		return 0, errors.New("memory is 0")
	}
	lo := (l.MinMemory + mib - 1) / mib * mib // round the bounds inward to whole MiB
	hi := l.MaxMemory / mib * mib
	if hi == 0 || lo > hi {
		return 0, fmt.Errorf("vz reported no usable memory range (%d..%d bytes)", l.MinMemory, l.MaxMemory)
	}
	if memMiB > hi/mib {
		*notes = append(*notes, fmt.Sprintf("memory lowered from %d MiB to vz's maximum %d MiB", memMiB, hi/mib))
		return hi, nil
	}
	b := memMiB * mib
	if b < lo {
		*notes = append(*notes, fmt.Sprintf("memory raised from %d MiB to vz's minimum %d MiB", memMiB, lo/mib))
		return lo, nil
	}
	return b, nil
}

func checkBlockID(id string) error {
	if len(id) > MaxBlockIDLen {
		return fmt.Errorf("disk id %q is longer than %d bytes (the virtio-blk serial limit)", id, MaxBlockIDLen)
	}
	for _, r := range id {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("disk id %q: only printable ASCII is allowed", id)
		}
	}
	return nil
}

func checkTag(tag string) error {
	if tag == "" {
		return errors.New("empty virtiofs tag")
	}
	if len(tag) > MaxTagLen {
		return fmt.Errorf("virtiofs tag %q is longer than %d bytes", tag, MaxTagLen)
	}
	for _, r := range tag {
		if r <= 0x20 || r > 0x7e {
			return fmt.Errorf("virtiofs tag %q: use printable ASCII without spaces", tag)
		}
	}
	return nil
}

// arm64ImageMagic is "ARM\x64" at offset 0x38 of an arm64 Linux Image header
// (Documentation/arch/arm64/booting.rst).
var arm64ImageMagic = []byte{'A', 'R', 'M', 0x64}

// CheckKernel rejects kernel images vz cannot boot. On arm64 VZLinuxBootLoader needs the
// uncompressed Image: a gzip'd vmlinuz or an EFI zboot image fails at start with an opaque
// "internal error". amd64 is not checked beyond gzip.
func CheckKernel(r io.ReaderAt, arch string) error {
	var hdr [64]byte
	n, err := r.ReadAt(hdr[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	h := hdr[:n]
	if bytes.HasPrefix(h, []byte{0x1f, 0x8b}) {
		return errors.New("kernel is gzip-compressed; vz needs the uncompressed image (gunzip it)")
	}
	if arch != "arm64" {
		return nil
	}
	if len(h) >= 8 && string(h[0:2]) == "MZ" && string(h[4:8]) == "zimg" {
		return errors.New("kernel is an EFI zboot (compressed) image; vz needs the uncompressed arm64 Image")
	}
	if len(h) < 0x3c || !bytes.Equal(h[0x38:0x3c], arm64ImageMagic) {
		return errors.New("kernel is not an arm64 Linux Image (no ARM\\x64 magic at offset 0x38)")
	}
	return nil
}
