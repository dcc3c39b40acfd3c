//go:build linux

package guestagent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

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
var dataBinds = []string{"docker", "containerd", "registry"}

// Modules the engine needs that the boot subset does not carry. The real modprobe from the
// root image loads them with their dependencies; the kernel autoloads the rest (netfilter
// matches and targets) through /proc/sys/kernel/modprobe.
var engineModules = []string{
	"overlay", "br_netfilter", "bridge", "veth", "nf_tables", "nft_chain_nat", "nft_compat",
	"xt_MASQUERADE", "xt_addrtype", "xt_conntrack", "nf_nat", "ip_tables", "iptable_nat",
	"iptable_filter",
	// The agent's listener scan (sockdiag_linux.go); inet_diag comes as their dependency.
	"tcp_diag", "udp_diag",
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

// quietSysctls make the kernel itself wake less when idle. The idle benchmark's tuned bare
// VM (berth.bare=idle-tuned) sets them too, to tell what the guest's services cost from
// what the kernel saves.
var quietSysctls = []struct{ key, value string }{
	// No proactive compaction: kcompactd would wake every 500 ms to measure fragmentation
	// and compact a little each time it finds some, which an idle VM pays for (under
	// emulation, visibly: docs/resources.md). Allocations that need contiguous memory
	// still compact on demand.
	{"vm.compaction_proactiveness", "0"},
}

// setSysctls writes each sysctl and logs the ones that fail.
func setSysctls(log *slog.Logger, sysctls []struct{ key, value string }) {
	for _, s := range sysctls {
		p := "/proc/sys/" + strings.ReplaceAll(s.key, ".", "/")
		if err := os.WriteFile(p, []byte(s.value+"\n"), 0o644); err != nil {
			log.Warn("failed to set sysctl", "key", s.key, "err", err)
		}
	}
}

const (
	maxOpenFiles = 1 << 20
	hostname     = "berth"
	pathEnv      = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// boot prepares the guest from the initramfs: loads the boot modules, mounts the root
// image under a tmpfs overlay, switches root into it, mounts or formats the data disk,
// configures the kernel and the network, and writes BootInfoPath. It must run as PID 1
// with /proc, /sys and /dev mounted.
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
	// The engine's files are read while the rest of the boot runs (prefetch_linux.go).
	prefetched := make(chan struct{})
	go func() {
		defer close(prefetched)
		prefetch(log, engineFiles)
	}()
	defer func() { <-prefetched }()

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
	configureCluster(log) // a cluster member's second NIC (cluster_linux.go)

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
	// ParseFloat takes NaN, Inf and exponents; none of them is an uptime.
	if !(secs >= 0 && secs < float64(math.MaxInt64/int64(time.Second))) {
		return 0, fmt.Errorf("malformed uptime %q", f[0])
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

// tuneKernel loads the engine's modules from the root image and sets the limits and
// sysctls a container host needs. Failures are logged: the engine reports what it misses
// more precisely than a guess here.
func tuneKernel(log *slog.Logger) {
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte("/sbin/modprobe\n"), 0o644); err != nil {
		log.Warn("failed to set the module loader path", "err", err)
	}
	modprobe(log, engineModules, slog.LevelWarn)
	modprobe(log, inputModules(), slog.LevelDebug)
	setSysctls(log, engineSysctls)
	setSysctls(log, quietSysctls)
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
