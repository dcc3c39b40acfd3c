//go:build linux

package guestagent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Data disk states.
type diskState int

const (
	diskEmpty   diskState = iota // all zeroes: a new sparse image
	diskExt4                     // has an ext2/3/4 superblock
	diskUnknown                  // neither: something we must not overwrite
)

func (s diskState) String() string {
	return [...]string{"empty", "ext4", "unknown"}[s]
}

// ext4 superblock layout (fs/ext4/ext4.h).
const (
	sbOffset        = 1024
	sbSize          = 1024
	sbMagicOff      = 0x38
	sbMagic         = 0xEF53
	sbBlocksLoOff   = 0x04
	sbLogBlockOff   = 0x18
	sbIncompatOff   = 0x60
	sbBlocksHiOff   = 0x150
	incompat64bit   = 0x80
	probeHeadLength = 1 << 20
)

// ext4Super is what berth needs from a superblock.
type ext4Super struct {
	BlockSize   uint64
	BlocksCount uint64
}

func (s ext4Super) Size() uint64 { return s.BlockSize * s.BlocksCount }

// parseExt4Super decodes a 1024-byte superblock; ok is false when the magic is absent.
func parseExt4Super(b []byte) (sb ext4Super, ok bool) {
	if len(b) < sbSize || binary.LittleEndian.Uint16(b[sbMagicOff:]) != sbMagic {
		return ext4Super{}, false
	}
	logBlock := binary.LittleEndian.Uint32(b[sbLogBlockOff:])
	if logBlock > 6 { // 64 KiB is the largest ext4 block size
		return ext4Super{}, false
	}
	sb.BlockSize = 1024 << logBlock
	sb.BlocksCount = uint64(binary.LittleEndian.Uint32(b[sbBlocksLoOff:]))
	if binary.LittleEndian.Uint32(b[sbIncompatOff:])&incompat64bit != 0 {
		sb.BlocksCount |= uint64(binary.LittleEndian.Uint32(b[sbBlocksHiOff:])) << 32
	}
	return sb, true
}

// probeDisk reads the head of a disk. It calls a disk empty only when its first MiB is
// all zeroes: a disk whose primary superblock is damaged still has its data and backup
// superblocks, and formatting it would destroy them.
func probeDisk(r io.ReaderAt) (diskState, ext4Super, error) {
	head := make([]byte, probeHeadLength)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return diskUnknown, ext4Super{}, err
	}
	head = head[:n]
	if n >= sbOffset+sbSize {
		if sb, ok := parseExt4Super(head[sbOffset : sbOffset+sbSize]); ok {
			return diskExt4, sb, nil
		}
	}
	if bytes.Count(head, []byte{0}) == len(head) {
		return diskEmpty, ext4Super{}, nil
	}
	return diskUnknown, ext4Super{}, nil
}

// growThreshold: the file system is grown when the disk is at least this much larger.
// mkfs leaves a sliver unused at the end; this keeps that from triggering resize2fs on
// every boot.
const growThreshold = 16 << 20

// setupDataDisk formats the data disk if it is new, checks it, mounts it on dataMount,
// grows it to the disk's size, and binds the engine's state directories onto it.
func setupDataDisk(log *slog.Logger, dev string) (formatted, resized bool, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, false, fmt.Errorf("failed to open data disk %s: %w", dev, err)
	}
	state, sb, err := probeDisk(f)
	devSize, serr := f.Seek(0, io.SeekEnd)
	f.Close()
	if err != nil {
		return false, false, fmt.Errorf("failed to read data disk %s: %w", dev, err)
	}
	if serr != nil {
		return false, false, fmt.Errorf("failed to size data disk %s: %w", dev, serr)
	}
	log.Info("data disk probed", "device", dev, "state", state, "size", devSize, "fsSize", sb.Size())

	switch state {
	case diskUnknown:
		return false, false, fmt.Errorf("data disk %s has no ext4 file system but is not empty; refusing to format it (delete the instance's data disk to start over)", dev)
	case diskEmpty:
		if err := run(log, "mkfs.ext4", "-F", "-q", "-L", DataDiskSerial, "-m", "0",
			"-E", "lazy_itable_init=1,lazy_journal_init=1", dev); err != nil {
			return false, false, fmt.Errorf("failed to format data disk %s: %w", dev, err)
		}
		formatted = true
	case diskExt4:
		checkDataDisk(log, dev)
	}

	if err := os.MkdirAll(dataMount, 0o755); err != nil {
		return formatted, false, fmt.Errorf("failed to create %s: %w", dataMount, err)
	}
	if err := unix.Mount(dev, dataMount, "ext4", unix.MS_NOATIME, ""); err != nil {
		return formatted, false, fmt.Errorf("failed to mount data disk %s on %s: %w", dev, dataMount, err)
	}
	if state == diskExt4 && uint64(devSize) >= sb.Size()+growThreshold {
		// Online resize: unlike an offline one it needs no forced full fsck first, and
		// ext4 only grows online, so a shrunken disk can never lose data here.
		if err := run(log, "resize2fs", dev); err != nil {
			log.Error("failed to grow the data file system; continuing with the old size", "device", dev, "err", err)
		} else {
			resized = true
			log.Info("data file system grown", "device", dev, "from", sb.Size(), "to", devSize)
		}
	}
	for _, d := range dataBinds {
		src, dst := filepath.Join(dataMount, d), filepath.Join("/var/lib", d)
		if err := os.MkdirAll(src, 0o711); err != nil {
			return formatted, resized, fmt.Errorf("failed to create %s: %w", src, err)
		}
		if err := os.MkdirAll(dst, 0o711); err != nil {
			return formatted, resized, fmt.Errorf("failed to create %s: %w", dst, err)
		}
		if err := mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			return formatted, resized, err
		}
	}
	return formatted, resized, nil
}

// e2fsckConf makes e2fsck ignore the clock: it runs before the host has set the guest's
// time, and a guest without an RTC would otherwise see every superblock time "in the
// future" and stop for a manual check.
const e2fsckConf = "[options]\n\tbroken_system_clock = 1\n"

// checkDataDisk runs `e2fsck -p`. It never fails the boot: the mount that follows
// decides whether the file system is usable, and its error is clearer.
func checkDataDisk(log *slog.Logger, dev string) {
	conf := "/run/berth/e2fsck.conf"
	if err := os.WriteFile(conf, []byte(e2fsckConf), 0o644); err != nil {
		log.Warn("failed to write e2fsck config", "err", err)
	}
	cmd := exec.Command("e2fsck", "-p", dev)
	cmd.Env = append(os.Environ(), "E2FSCK_CONFIG="+conf)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		log.Error("failed to run e2fsck", "device", dev, "err", err)
		return
	}
	msg := strings.TrimSpace(string(out))
	switch {
	case code == 0:
		log.Debug("data disk clean", "device", dev, "output", msg)
	case code < 4: // 1, 2: errors corrected
		log.Warn("e2fsck corrected errors on the data disk", "device", dev, "code", code, "output", msg)
	default:
		log.Error("e2fsck could not repair the data disk; mounting it anyway", "device", dev, "code", code, "output", msg)
	}
}
