//go:build linux

package guestagent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	initImpl = initMain
	powerOffImpl = powerOff
}

const (
	// maxAgentLog bounds the log in RAM (/run is a tmpfs): past it the file is rotated
	// to AgentLogPath+".1".
	maxAgentLog = 8 << 20
	// serveStopTimeout is how long a shutdown waits for the serve process to stop the
	// engine and exit.
	serveStopTimeout = 20 * time.Second
	// orphanStopTimeout is how long the remaining processes get after SIGTERM.
	orphanStopTimeout = 5 * time.Second

	minRestartDelay = time.Second
	maxRestartDelay = 30 * time.Second
	// stableRun: a serve process that ran this long resets the restart backoff.
	stableRun = time.Minute

	bootFailedPrefix = "berth-agent: boot failed:"
)

func initMain(log *slog.Logger) {
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
	// alive (and unlike signal.Ignore, nothing is inherited by children).
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGPWR,
		unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)

	if err := os.MkdirAll("/proc", 0o755); err == nil {
		_ = unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	cl, err := ReadCmdline()
	if err != nil {
		fatal(log, err)
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

	if _, err := Boot(log); err != nil {
		fatal(log, err)
	}
	if err := sink.open(AgentLogPath); err != nil {
		log.Error("failed to open the agent log; logging to the console only", "path", AgentLogPath, "err", err)
	}

	s := &supervisor{log: log, sigs: sigs, power: make(chan string, 1), backoff: minRestartDelay}
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

// supervisor is PID 1 after boot: it runs the serve process, reaps every process that
// ends up orphaned, and turns power-off requests into an orderly shutdown. One goroutine
// owns all of its state.
//
// PID 1 reaps with wait4(-1), so it must never use exec.Cmd.Wait itself once the loop
// runs; the serve process is a separate process, so its own Waits are unaffected.
type supervisor struct {
	log   *slog.Logger
	sigs  chan os.Signal
	power chan string // reasons from the power button watcher
	out   *os.File    // the serve process's stdout and stderr
	env   []string

	serve    *os.Process
	started  time.Time
	backoff  time.Duration
	restartC <-chan time.Time
	stopping bool
}

func (s *supervisor) run() {
	s.startServe()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case sig := <-s.sigs:
			s.handleSignal(sig)
		case why := <-s.power:
			s.shutdown(why)
		case <-s.restartC:
			s.restartC = nil
			s.startServe()
		case <-tick.C:
			// Signals coalesce and a full channel drops them: reap now and then anyway.
			s.reapAll()
		}
	}
}

func (s *supervisor) startServe() {
	// /proc/self/exe still execs the agent after the initramfs it came from is gone.
	cmd := exec.Command("/proc/self/exe", "serve")
	cmd.Args[0] = "berth-agent"
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.Env = s.env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		s.log.Error("failed to start the serve process", "err", err)
		s.scheduleRestart()
		return
	}
	s.serve = cmd.Process
	s.log.Info("serve process started", "pid", s.serve.Pid)
}

func (s *supervisor) scheduleRestart() {
	if time.Since(s.started) >= stableRun {
		s.backoff = minRestartDelay
	}
	delay := s.backoff
	s.backoff = min(s.backoff*2, maxRestartDelay)
	s.log.Warn("restarting the serve process", "in", delay)
	s.restartC = time.After(delay)
}

func (s *supervisor) handleSignal(sig os.Signal) {
	switch sig {
	case unix.SIGCHLD:
		s.reapAll()
	case unix.SIGTERM, unix.SIGINT, unix.SIGPWR:
		s.shutdown("signal " + sig.String())
	default:
		s.log.Debug("ignoring signal", "signal", sig)
	}
}

// reapAll collects every exited child; it reports whether PID 1 has no children left.
func (s *supervisor) reapAll() (none bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return errors.Is(err, unix.ECHILD)
		}
		if pid <= 0 {
			return false
		}
		if s.serve != nil && pid == s.serve.Pid {
			s.serveExited(ws)
		}
	}
}

func (s *supervisor) serveExited(ws unix.WaitStatus) {
	level := slog.LevelError
	if s.stopping {
		level = slog.LevelInfo
	}
	s.log.Log(context.Background(), level, "serve process exited", "pid", s.serve.Pid,
		"status", waitStatusString(ws), "ran", time.Since(s.started).Round(time.Millisecond))
	_ = s.serve.Release()
	s.serve = nil
	if !s.stopping {
		s.scheduleRestart()
	}
}

func waitStatusString(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("%#x", uint32(ws))
}

// shutdown stops everything and powers off: the serve process first (it stops the engine
// cleanly), then whatever is left, then the disks.
func (s *supervisor) shutdown(reason string) {
	s.log.Info("shutting down", "reason", reason)
	s.stopping = true
	s.restartC = nil
	if s.serve != nil {
		_ = s.serve.Signal(unix.SIGTERM)
		if !s.waitFor(serveStopTimeout, func() bool { return s.serve == nil }) {
			s.log.Warn("serve process did not stop in time; killing it", "timeout", serveStopTimeout)
			_ = s.serve.Kill()
			s.waitFor(2*time.Second, func() bool { return s.serve == nil })
		}
	}
	// kill(-1) from PID 1 reaches every other process.
	if !s.reapAll() {
		_ = unix.Kill(-1, unix.SIGTERM)
		if !s.waitFor(orphanStopTimeout, s.reapAll) {
			s.log.Warn("processes left after SIGTERM; killing them")
			_ = unix.Kill(-1, unix.SIGKILL)
			s.waitFor(2*time.Second, s.reapAll)
		}
	}
	err := powerOff()
	s.log.Error("power off failed", "err", err)
	for {
		time.Sleep(time.Hour)
	}
}

// waitFor reaps children until done() holds or the timeout passes.
func (s *supervisor) waitFor(timeout time.Duration, done func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.reapAll()
		if done() {
			return true
		}
		select {
		case sig := <-s.sigs:
			if sig != unix.SIGCHLD {
				s.log.Info("already shutting down; ignoring signal", "signal", sig)
			}
		case <-s.power:
		case <-tick.C:
		case <-deadline.C:
			return false
		}
	}
}

// powerOff syncs, unmounts the data disk and everything on it (the engine's overlay
// and network namespace mounts, shares) and powers off. Unmounting is best effort: a
// busy data file system is remounted read-only instead, and the journal covers the rest.
func powerOff() error {
	unix.Sync()
	f, err := os.Open("/proc/self/mountinfo")
	if err == nil {
		mounts, _ := parseMountinfo(f)
		f.Close()
		for _, m := range unmountOrder(mounts) {
			if err := unix.Unmount(m.MountPoint, 0); err != nil && m.MountPoint == dataMount {
				_ = unix.Mount("", dataMount, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
			}
		}
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	MountPoint string
	FSType     string
	Source     string
}

// parseMountinfo reads /proc/<pid>/mountinfo (see proc(5)).
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		f := strings.Fields(s.Text())
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			return out, fmt.Errorf("malformed mountinfo line %q", s.Text())
		}
		out = append(out, mountEntry{
			MountPoint: unescapeMountinfo(f[4]),
			FSType:     f[sep+1],
			Source:     unescapeMountinfo(f[sep+2]),
		})
	}
	return out, s.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, …).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountPrefixes hold the data disk and what the engine mounts from it.
var unmountPrefixes = []string{dataMount, "/var/lib/docker", "/var/lib/containerd", "/run/docker", "/run/containerd"}

// unmountOrder picks the mounts to take down at power off, children before parents:
// everything on or from the data disk and the host shares.
func unmountOrder(mounts []mountEntry) []mountEntry {
	var out []mountEntry
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		keep := m.FSType == "virtiofs" || m.FSType == "9p"
		for _, p := range unmountPrefixes {
			if m.MountPoint == p || strings.HasPrefix(m.MountPoint, p+"/") {
				keep = true
			}
		}
		if keep {
			out = append(out, m)
		}
	}
	return out
}

// logSink is the agent log file. Until /run exists it buffers (bounded), so the boot's
// own log lines land in the file too.
type logSink struct {
	mu   sync.Mutex
	buf  []byte
	f    *os.File
	path string
	size int64
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if len(s.buf)+len(p) <= 1<<20 {
			s.buf = append(s.buf, p...)
		}
		return len(p), nil
	}
	if s.size+int64(len(p)) > maxAgentLog {
		s.rotate()
	}
	n, _ := s.f.Write(p)
	s.size += int64(n)
	// A log that cannot be written must not stop whoever is logging.
	return len(p), nil
}

func (s *logSink) open(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	s.f, s.path = f, path
	if st, err := f.Stat(); err == nil {
		s.size = st.Size()
	}
	n, _ := f.Write(s.buf)
	s.size += int64(n)
	s.buf = nil
	return nil
}

func (s *logSink) rotate() {
	s.f.Close()
	_ = os.Rename(s.path, s.path+".1")
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		// Keep writing nowhere rather than crash PID 1.
		f, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	s.f, s.size = f, 0
}

// teeLines copies r to every writer a line at a time, so lines from different writers
// never interleave mid-line in the log; errors on one writer do not starve the others.
func teeLines(r io.Reader, ws ...io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			for _, w := range ws {
				_, _ = w.Write(line)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// fanoutHandler sends each record to several handlers.
type fanoutHandler []slog.Handler

func (h fanoutHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, x := range h {
		if x.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (h fanoutHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			errs = append(errs, x.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (h fanoutHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanoutHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}

func (h fanoutHandler) WithGroup(name string) slog.Handler {
	out := make(fanoutHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}

// Linux input constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
	// inputEventSize is sizeof(struct input_event) on 64-bit kernels: a 16-byte
	// timeval, type and code (u16 each) and value (s32).
	inputEventSize = 24
)

// inputDevice is one block of /proc/bus/input/devices.
type inputDevice struct {
	Name     string
	Handlers []string
	Keys     []uint64 // the KEY capability bitmap, least significant word first
}

func (d inputDevice) hasKey(code int) bool {
	w := code / 64
	return w < len(d.Keys) && d.Keys[w]&(1<<(code%64)) != 0
}

// eventNode returns the device's evdev node name ("event0"), "" when evdev is absent.
func (d inputDevice) eventNode() string {
	for _, h := range d.Handlers {
		if strings.HasPrefix(h, "event") {
			return h
		}
	}
	return ""
}

// parseInputDevices reads /proc/bus/input/devices. The capability bitmaps are printed
// as hex words of the kernel's long, most significant first; wordBits is that width.
func parseInputDevices(r io.Reader, wordBits int) ([]inputDevice, error) {
	var out []inputDevice
	var cur *inputDevice
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		if strings.TrimSpace(line) == "" {
			cur = nil
			continue
		}
		if cur == nil {
			out = append(out, inputDevice{})
			cur = &out[len(out)-1]
		}
		switch {
		case strings.HasPrefix(line, "N: Name="):
			cur.Name = strings.Trim(strings.TrimPrefix(line, "N: Name="), `"`)
		case strings.HasPrefix(line, "H: Handlers="):
			cur.Handlers = strings.Fields(strings.TrimPrefix(line, "H: Handlers="))
		case strings.HasPrefix(line, "B: KEY="):
			keys, err := parseBitmap(strings.TrimPrefix(line, "B: KEY="), wordBits)
			if err != nil {
				return out, fmt.Errorf("device %q: %w", cur.Name, err)
			}
			cur.Keys = keys
		}
	}
	return out, s.Err()
}

// parseBitmap turns "10000000000000 0" (most significant word first) into 64-bit words,
// least significant first.
func parseBitmap(s string, wordBits int) ([]uint64, error) {
	f := strings.Fields(s)
	var bits []bool
	for i := len(f) - 1; i >= 0; i-- {
		v, err := strconv.ParseUint(f[i], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed bitmap %q: %w", s, err)
		}
		for b := 0; b < wordBits; b++ {
			bits = append(bits, v&(1<<b) != 0)
		}
	}
	words := make([]uint64, (len(bits)+63)/64)
	for i, on := range bits {
		if on {
			words[i/64] |= 1 << (i % 64)
		}
	}
	return words, nil
}

// powerKeyNodes returns the evdev nodes of the devices that can send KEY_POWER: the
// ACPI "Power Button" on x86 (QEMU system_powerdown), gpio-keys on arm64 `virt`.
func powerKeyNodes(devs []inputDevice) (nodes, names []string) {
	for _, d := range devs {
		if n := d.eventNode(); n != "" && d.hasKey(keyPower) {
			nodes = append(nodes, n)
			names = append(names, d.Name)
		}
	}
	return nodes, names
}

// isPowerPress reports whether one input_event is a KEY_POWER press.
func isPowerPress(ev []byte) bool {
	if len(ev) < inputEventSize {
		return false
	}
	typ := binary.NativeEndian.Uint16(ev[16:])
	code := binary.NativeEndian.Uint16(ev[18:])
	value := int32(binary.NativeEndian.Uint32(ev[20:]))
	return typ == evKey && code == keyPower && value == 1
}

// watchPowerButton sends on power when a power key is pressed. Nobody else handles the
// button in the guest (there is no acpid or logind), so without this a hypervisor's
// "shut down" request would do nothing.
func watchPowerButton(log *slog.Logger, power chan<- string) {
	var nodes, names []string
	// The input devices register while their modules load during boot; give them a moment.
	for i := 0; i < 20 && len(nodes) == 0; i++ {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		f, err := os.Open("/proc/bus/input/devices")
		if err != nil {
			continue
		}
		devs, err := parseInputDevices(f, strconv.IntSize)
		f.Close()
		if err != nil {
			log.Warn("failed to parse input devices", "err", err)
		}
		nodes, names = powerKeyNodes(devs)
	}
	if len(nodes) == 0 {
		log.Warn("no power button found; the guest powers off only through the agent")
		return
	}
	for i, n := range nodes {
		path := "/dev/input/" + n
		var f *os.File
		var err error
		for try := 0; try < 20; try++ { // devtmpfs creates the node asynchronously
			if f, err = os.Open(path); err == nil || !errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			log.Warn("failed to open power button", "device", path, "name", names[i], "err", err)
			continue
		}
		log.Info("watching power button", "device", path, "name", names[i])
		go func(f *os.File, name string) {
			defer f.Close()
			buf := make([]byte, inputEventSize*64)
			for {
				n, err := f.Read(buf)
				if err != nil {
					log.Warn("power button read failed", "device", f.Name(), "err", err)
					return
				}
				for off := 0; off+inputEventSize <= n; off += inputEventSize {
					if isPowerPress(buf[off : off+inputEventSize]) {
						select {
						case power <- "power button (" + name + ")":
						default:
						}
					}
				}
			}
		}(f, names[i])
	}
}
