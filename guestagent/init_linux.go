//go:build linux

package guestagent

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

const bootFailedPrefix = "berth-agent: boot failed:"

// Init is the guest's PID 1: it mounts the kernel file systems, runs boot, then starts
// and supervises `<self> serve`, reaps orphans and handles power-off requests (SIGTERM,
// SIGINT, SIGPWR and the ACPI/GPIO power button). It never returns; when the boot fails it
// prints "berth-agent: boot failed: <reason>" on the console and powers the guest off.
func Init(log *slog.Logger) {
	if os.Getpid() != 1 {
		log.Error("berth-agent init must run as PID 1", "pid", os.Getpid())
		os.Exit(1)
	}
	// PID 1 must never return or exit: the kernel panics and the reason scrolls away.
	defer func() {
		if r := recover(); r != nil {
			fatal(log, fmt.Errorf("panic: %v", r))
		}
	}()
	// Signals with no handler are not delivered to PID 1, but Go installs handlers and
	// exits on SIGHUP & co. when nobody listens; listening for all of them keeps PID 1
	// alive (and unlike signal.Ignore, nothing is inherited by children). SIGCHLD has a
	// channel of its own: a SIGCHLD dropped because one is already waiting there is
	// covered by the reap that one brings, so PID 1 never has to look on a timer.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPWR,
		unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	chld := make(chan os.Signal, 1)
	signal.Notify(chld, unix.SIGCHLD)

	if err := os.MkdirAll("/proc", 0o755); err == nil {
		_ = unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	cl, err := ReadCmdline()
	if err != nil {
		fatal(log, err)
	}
	if v := cl[CmdlineBare]; v == BareIdle || v == BareIdleTuned {
		// The idle benchmark's baselines: kernel + initramfs (tuned as berth's boot tunes
		// it, for idle-tuned) and a PID 1 that only waits.
		if v == BareIdleTuned {
			setSysctls(log, quietSysctls)
		}
		for range sigs {
		}
	}
	if cl.Flag(CmdlineBare) {
		// The boot benchmark's baseline: kernel + initramfs, nothing else.
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	if err := mountKernelFS(); err != nil {
		fatal(log, err)
	}
	ensureConsole()
	// Ctrl-Alt-Del becomes SIGINT to PID 1 instead of an immediate reboot.
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)

	sink := &logSink{}
	level := slog.LevelInfo
	if cl.Flag(CmdlineDebug) {
		level = slog.LevelDebug
	}
	log = slog.New(fanoutHandler{log.Handler(),
		slog.NewTextHandler(sink, &slog.HandlerOptions{Level: level}).WithAttrs([]slog.Attr{slog.String("proc", "init")})})

	if _, err := boot(log); err != nil {
		fatal(log, err)
	}
	if err := sink.open(AgentLogPath); err != nil {
		log.Error("failed to open the agent log; logging to the console only", "path", AgentLogPath, "err", err)
	}

	s := &supervisor{log: log, sigs: sigs, chld: chld, power: make(chan string, 1), backoff: minRestartDelay}
	s.env = os.Environ()
	if cl.Flag(CmdlineDebug) {
		s.env = append(s.env, "BERTH_DEBUG=1")
	}
	r, w, err := os.Pipe()
	if err != nil {
		fatal(log, fmt.Errorf("failed to create the log pipe: %w", err))
	}
	s.out = w
	go teeLines(r, os.Stderr, sink)
	go watchPowerButton(log, s.power)
	s.run()
}

// fatal reports a boot failure on the console, where the host's console log keeps it,
// and powers off so the host sees the VM exit.
func fatal(log *slog.Logger, err error) {
	log.Error("boot failed", "err", err)
	fmt.Fprintf(os.Stderr, "%s %v\n", bootFailedPrefix, err)
	time.Sleep(2 * time.Second)
	unix.Sync()
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stderr, "berth-agent: power off failed: %v\n", err)
	for {
		time.Sleep(time.Hour)
	}
}

// ensureConsole gives PID 1 a console on fds 0-2 when the initramfs had no /dev/console
// for the kernel to open.
func ensureConsole() {
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err == nil {
		return
	}
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		if fd != i {
			_ = unix.Dup3(fd, i, 0)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
}
