//go:build linux

package guestagent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	bootImpl = boot
}

// Disk serials the host gives the virtio block devices (vm.Disk.ID).
const (
	RootDiskSerial = "berth-root"
	DataDiskSerial = "berth-data"
)

// Paths inside the initramfs and the new root.
const (
	rootRO      = "/mnt/root-ro" // the read-only root image, in the initramfs
	rootRW      = "/mnt/rw"      // tmpfs holding the overlay's upper and work dirs
	newRoot     = "/newroot"     // the overlay, which becomes /
	diskTimeout = 10 * time.Second
)

// dataBinds are the engine's state directories, kept on the data disk.
var dataBinds = []string{"docker", "containerd"}

// Modules the engine needs that the boot subset does not carry. The real modprobe from the
// root image loads them with their dependencies; the kernel autoloads the rest (netfilter
// matches and targets) through /proc/sys/kernel/modprobe.
var engineModules = []string{
	"overlay", "br_netfilter", "bridge", "veth", "nf_tables", "nft_chain_nat", "nft_compat",
	"xt_MASQUERADE", "xt_addrtype", "xt_conntrack", "nf_nat", "ip_tables", "iptable_nat",
	"iptable_filter",
}

// Modules for the power button: without evdev there is no /dev/input/event* to watch,
// and Debian builds the ACPI button driver as a module. arm64 `virt` machines send the
// power key through gpio-keys instead.
func inputModules() []string {
	if runtime.GOARCH == "arm64" {
		return []string{"evdev", "gpio_keys"}
	}
	return []string{"evdev", "button"}
}

var engineSysctls = []struct{ key, value string }{
	{"net.ipv4.ip_forward", "1"},
	{"net.bridge.bridge-nf-call-iptables", "1"},
	{"net.bridge.bridge-nf-call-ip6tables", "1"},
	{"fs.inotify.max_user_watches", "1048576"},
	{"fs.inotify.max_user_instances", "8192"},
}

const (
	maxOpenFiles = 1 << 20
	hostname     = "berth"
	pathEnv      = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

func boot(log *slog.Logger) (*BootInfo, error) {
	bi := &BootInfo{}
	if up, err := readUptime(); err == nil {
		bi.KernelBoot = up
	} else {
		log.Warn("cannot read uptime", "err", err)
	}
	log.Info("boot started", "kernelBoot", bi.KernelBoot)
	os.Setenv("PATH", pathEnv)
	if err := mountKernelFS(); err != nil {
		return nil, err
	}
	if cl, err := ReadCmdline(); err == nil {
		advanceClock(log, cl[CmdlineTime])
	}

	step := stepTimer(log)
	if err := loadBootModules(log); err != nil {
		// Keep going: the error that matters (no disk, no ext4) comes next and names it.
		log.Warn("some boot modules failed to load", "err", err)
	}
	step("modules loaded")

	rootDev, dataDev, err := waitForDisks(log, "/sys/block", diskTimeout)
	if err != nil {
		return nil, err
	}
	bi.RootDevice, bi.DataDevice = rootDev, dataDev
	step("disks found", "root", rootDev, "data", dataDev)

	if err := mountOverlayRoot(log, rootDev); err != nil {
		return nil, err
	}
	step("root image mounted")
	if err := switchRoot(log, newRoot); err != nil {
		return nil, fmt.Errorf("failed to switch to the root image: %w", err)
	}
	step("switched root")

	if err := mountSystemFS(log); err != nil {
		return nil, err
	}
	if err := setupNetworkingBase(log); err != nil {
		log.Warn("loopback setup failed", "err", err)
	}
	// DHCP runs while the kernel is tuned and the data disk is checked.
	netDone := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), dhcpTimeout)
		defer cancel()
		ip, err := configureNetwork(ctx, log)
		if err != nil {
			log.Error("network setup failed; the guest has no network", "err", err)
		}
		netDone <- ip
	}()

	// Loading the engine's modules takes seconds under TCG, and so does formatting a
	// new data disk: do both at once.
	tuned := make(chan struct{})
	go func() {
		defer close(tuned)
		tuneKernel(log)
		step("kernel tuned")
	}()

	formatted, resized, err := setupDataDisk(log, dataDev)
	<-tuned
	if err != nil {
		return nil, err
	}
	bi.Formatted, bi.Resized = formatted, resized
	step("data disk mounted")

	bi.IP = <-netDone
	step("network ready", "ip", bi.IP)

	if up, err := readUptime(); err == nil {
		bi.BootDone = up
	}
	if err := writeBootInfo(BootInfoPath, bi); err != nil {
		return nil, fmt.Errorf("failed to write %s: %w", BootInfoPath, err)
	}
	log.Info("boot finished", "kernelBoot", bi.KernelBoot, "bootDone", bi.BootDone,
		"ip", bi.IP, "formatted", bi.Formatted, "resized", bi.Resized)
	return bi, nil
}

// stepTimer logs how long each boot step took: under TCG boot is slow enough that the
// breakdown is the first thing to look at.
func stepTimer(log *slog.Logger) func(msg string, args ...any) {
	var mu sync.Mutex
	last := time.Now()
	return func(msg string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		log.Info(msg, append(args, "took", now.Sub(last).Round(time.Millisecond))...)
		last = now
	}
}

// readUptime returns the guest's uptime from /proc/uptime.
func readUptime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	return parseUptime(string(b))
}

// parseUptime parses the first field of /proc/uptime ("12.34 5.67").
func parseUptime(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty uptime")
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("malformed uptime %q: %w", f[0], err)
	}
	return time.Duration(secs * float64(time.Second)).Round(time.Millisecond), nil
}

// advanceClock moves the clock forward to the host's time from the command line when
// the guest clock is behind it (no RTC); it never moves the clock back.
func advanceClock(log *slog.Logger, v string) {
	if v == "" {
		return
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		log.Warn("ignoring malformed "+CmdlineTime, "value", v)
		return
	}
	if time.Now().Unix() >= secs {
		return
	}
	tv := unix.Timeval{Sec: secs}
	if err := unix.Settimeofday(&tv); err != nil {
		log.Warn("failed to set the clock", "err", err)
		return
	}
	log.Info("clock set from the kernel command line", "time", time.Unix(secs, 0).UTC())
}

// mount is unix.Mount with an error that names what failed.
func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("failed to mount %s (%s) on %s: %w", source, fstype, target, err)
	}
	return nil
}

// mountKernelFS mounts /proc, /sys and /dev. It is idempotent: a file system already
// mounted there (EBUSY) is fine.
func mountKernelFS() error {
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", m.target, err)
		}
		if mounted, _ := isMountPoint(m.target); mounted {
			continue
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("failed to mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// isMountPoint compares a directory's device with its parent's; good enough for the
// fixed paths used here (it misses bind mounts of the same file system).
func isMountPoint(path string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(filepath.Clean(path)), &pst); err != nil {
		return false, err
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino, nil
}

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
	sort.Slice(devs, func(i, j int) bool {
		a, b := devs[i].Name, devs[j].Name
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
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

// mountOverlayRoot mounts the read-only root image under a tmpfs overlay at newRoot.
func mountOverlayRoot(log *slog.Logger, rootDev string) error {
	for _, d := range []string{rootRO, rootRW, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	err := unix.Mount(rootDev, rootRO, "ext4", unix.MS_RDONLY, "")
	if err != nil {
		// A journal that needs recovery cannot be replayed on a read-only device; the
		// image is built clean, so skipping the journal loses nothing.
		log.Warn("mounting the root image failed; retrying without the journal", "err", err)
		if err2 := unix.Mount(rootDev, rootRO, "ext4", unix.MS_RDONLY, "noload"); err2 != nil {
			return fmt.Errorf("failed to mount root image %s: %w", rootDev, err)
		}
	}
	if err := mount("tmpfs", rootRW, "tmpfs", 0, "mode=0755"); err != nil {
		return err
	}
	for _, d := range []string{rootRW + "/upper", rootRW + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", rootRO, rootRW, rootRW)
	if err := mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("%w (is the overlay module in the initramfs?)", err)
	}
	// /run comes up before the switch so the layers can be moved under it: after the
	// switch they stay reachable (/run/berth/rw/upper shows what the guest changed)
	// instead of hiding under the old root.
	run := newRoot + "/run"
	if err := os.MkdirAll(run, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %w", run, err)
	}
	if err := mount("tmpfs", run, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	for _, m := range []struct{ from, to string }{{rootRO, run + "/berth/root-ro"}, {rootRW, run + "/berth/rw"}} {
		if err := os.MkdirAll(m.to, 0o755); err == nil {
			err = unix.Mount(m.from, m.to, "", unix.MS_MOVE, "")
			if err != nil {
				log.Warn("failed to move an overlay layer", "from", m.from, "to", m.to, "err", err)
			}
		}
	}
	return nil
}

// switchRoot does what util-linux switch_root does: move the kernel file systems into
// the new root, free the initramfs, move the new root onto / and chroot into it.
func switchRoot(log *slog.Logger, dir string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := os.MkdirAll(dir+m, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", dir+m, err)
		}
		if err := mount(m, dir+m, "", unix.MS_MOVE, ""); err != nil {
			return err
		}
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	freeInitramfs(log)
	if err := mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("failed to chroot into %s: %w", dir, err)
	}
	return os.Chdir("/")
}

// freeInitramfs deletes the initramfs files, which otherwise pin their RAM for the
// guest's life. It only ever touches a ramfs/tmpfs root and never crosses into another
// mount. The running binary stays usable: its inode lives while it is mapped, and
// /proc/self/exe still execs it.
func freeInitramfs(log *slog.Logger) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return
	}
	if uint32(sfs.Type) != uint32(unix.RAMFS_MAGIC) && uint32(sfs.Type) != uint32(unix.TMPFS_MAGIC) {
		log.Warn("old root is not an initramfs; not deleting it", "fstype", fmt.Sprintf("%#x", sfs.Type))
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return
	}
	n := removeSameDev("/", st.Dev)
	log.Debug("initramfs freed", "removed", n)
}

// removeSameDev removes everything under dir that is on device dev, leaving mount points
// (and what is under them) alone. It returns how many entries it removed.
func removeSameDev(dir string, dev uint64) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			n += removeSameDev(p, dev)
			if unix.Rmdir(p) == nil {
				n++
			}
		} else if unix.Unlink(p) == nil {
			n++
		}
	}
	return n
}

// mountSystemFS mounts what a Debian userland and the engine expect, after the switch.
func mountSystemFS(log *slog.Logger) error {
	type m struct {
		fstype, target string
		flags          uintptr
		data           string
		optional       bool
	}
	const nsn = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, x := range []m{
		{"tmpfs", "/tmp", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
		{"devpts", "/dev/pts", unix.MS_NOSUID | unix.MS_NOEXEC, "ptmxmode=0666,gid=5,mode=0620", false},
		{"tmpfs", "/dev/shm", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
		{"mqueue", "/dev/mqueue", nsn, "", true},
		{"cgroup2", "/sys/fs/cgroup", nsn, "nsdelegate", false},
	} {
		if err := os.MkdirAll(x.target, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", x.target, err)
		}
		err := unix.Mount(x.fstype, x.target, x.fstype, x.flags, x.data)
		if err != nil && x.fstype == "cgroup2" {
			err = unix.Mount(x.fstype, x.target, x.fstype, x.flags, "")
		}
		if err != nil {
			if x.optional {
				log.Warn("optional mount failed", "target", x.target, "err", err)
				continue
			}
			return fmt.Errorf("failed to mount %s on %s: %w", x.fstype, x.target, err)
		}
	}
	// Docker's volume and bind propagation options need shared mounts; a plain init
	// leaves everything private.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return err
	}
	// devtmpfs has no /dev/fd & co.; udev would create them (bash process substitution
	// and `docker run … > /dev/stdout` need them).
	for _, l := range []struct{ name, target string }{
		{"/dev/fd", "/proc/self/fd"},
		{"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"},
		{"/dev/stderr", "/proc/self/fd/2"},
		{"/dev/ptmx", "pts/ptmx"},
	} {
		if _, err := os.Lstat(l.name); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(l.target, l.name); err != nil {
				log.Warn("failed to create symlink", "name", l.name, "err", err)
			}
		}
	}
	return os.MkdirAll("/run/berth", 0o755)
}

// tuneKernel loads the engine's modules from the root image and sets the limits and
// sysctls a container host needs. Failures are logged: the engine reports what it misses
// more precisely than a guess here.
func tuneKernel(log *slog.Logger) {
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte("/sbin/modprobe\n"), 0o644); err != nil {
		log.Warn("failed to set the module loader path", "err", err)
	}
	modprobe(log, engineModules, slog.LevelWarn)
	modprobe(log, inputModules(), slog.LevelDebug)
	for _, s := range engineSysctls {
		p := "/proc/sys/" + strings.ReplaceAll(s.key, ".", "/")
		if err := os.WriteFile(p, []byte(s.value+"\n"), 0o644); err != nil {
			log.Warn("failed to set sysctl", "key", s.key, "err", err)
		}
	}
	lim := unix.Rlimit{Cur: maxOpenFiles, Max: maxOpenFiles}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("failed to raise the open file limit", "err", err)
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		log.Warn("failed to set the hostname", "err", err)
	}
	// binfmt_misc lets `docker run --platform` use qemu-user handlers registered later.
	if err := unix.Mount("binfmt_misc", "/proc/sys/fs/binfmt_misc", "binfmt_misc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		log.Debug("binfmt_misc not mounted", "err", err)
	}
}

// modprobe loads modules with the root image's modprobe in one exec (each exec is
// costly under TCG); on failure it logs modprobe's own message, which names the modules.
func modprobe(log *slog.Logger, mods []string, level slog.Level) {
	out, err := exec.Command("/sbin/modprobe", append([]string{"-a"}, mods...)...).CombinedOutput()
	if err != nil {
		log.Log(context.Background(), level, "modprobe failed", "modules", mods, "err", err,
			"output", strings.TrimSpace(string(out)))
	}
}

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

// run runs a command and folds its output into the error.
func run(log *slog.Logger, name string, args ...string) error {
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	log.Debug("ran", "cmd", name, "args", args, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("%s: %w: %s", name, err, s)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
