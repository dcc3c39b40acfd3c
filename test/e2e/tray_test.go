//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	stdimage "image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/gui"
	"github.com/berth-dev/berth/host/api"
	"github.com/godbus/dbus/v5"
)

// The tray tests run the real berth-tray binary on a private X server (Xvfb) with a
// private D-Bus session bus against a real instance. They use its menu as a desktop's
// tray host does — the StatusNotifierItem and its com.canonical.dbusmenu on the bus:
// read the icon, the tooltip and the items, send clicks — and take screenshots through
// its automation hook (docs/tray.md).

// trayBin is $BERTH_TRAY_BIN, or berth-tray built now (cgo; cached after the first build).
func trayBin(t testing.TB) string {
	if b := os.Getenv("BERTH_TRAY_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "berth-tray")
	cmd := exec.Command("go", "build", "-o", out, "../../cmd/berth-tray")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-tray (needs gcc, libgl1-mesa-dev, xorg-dev): %v\n%s", err, b)
	}
	return out
}

// trayOverWeb starts the default instance with a container "web" serving HTTP on
// localhost:hostPort, a private X server, and berth-tray on it with its D-Bus bus.
func trayOverWeb(tb testing.TB, hostPort int) (*env, string, *tray, *trayBus) {
	e := newEnv(tb)
	e.mustBerth("start", "--cpus", "2", "--memory", "2")
	e.busyboxImage(image)
	e.mustDocker("run", "-d", "--name", "web", "-p", fmt.Sprintf("%d:80", hostPort), image, "testsrv", "http", "80")
	display := startXvfb(tb)
	tr := e.startTray(display, true)
	return e, display, tr, tr.connectBus()
}

// startXvfb starts a private X server on a free display and returns its DISPLAY.
func startXvfb(t testing.TB) string {
	if _, err := exec.LookPath("Xvfb"); err != nil {
		t.Fatalf("Xvfb not found (apt-get install xvfb): %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// -displayfd: the server takes the first free display number and writes it to fd 3,
	// so concurrent runs never collide.
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-dpi", "96", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
		r.Close()
	}()
	select {
	case n := <-got:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb did not report a display (%q): %s", n, stderr.String())
		}
		t.Logf("Xvfb on :%s", n)
		return ":" + n
	case <-time.After(30 * time.Second):
		t.Fatalf("Xvfb did not start in 30s: %s", stderr.String())
	}
	return ""
}

// startSessionBus starts a private D-Bus session bus, as a desktop session has: the tray
// icon is a D-Bus StatusNotifierItem on Linux. Without dbus-daemon the tray runs in its
// no-tray mode (the container window carries the menu).
func startSessionBus(t testing.TB, dir string) string {
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Logf("no dbus-daemon (apt-get install dbus-daemon): berth-tray runs without a tray icon")
		return ""
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=3",
		"--address=unix:path="+filepath.Join(dir, "bus"))
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(r).ReadString('\n')
	r.Close()
	if err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	return strings.TrimSpace(line)
}

// tray is a running berth-tray with its automation client.
type tray struct {
	t      testing.TB
	cmd    *exec.Cmd
	sock   string
	bus    string // the session bus address; "" without one (no-tray mode)
	client *http.Client
	log    *lockedBuffer
	exited chan struct{} // closed when the process is gone
	err    error         // its exit status, once exited is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startTray runs berth-tray on display. With withBus it gets a private session bus, so
// it shows a tray icon; without, it runs in its no-tray mode (one window with the menu).
func (e *env) startTray(display string, withBus bool) *tray {
	e.t.Helper()
	bin := trayBin(e.t)
	tr := &tray{t: e.t, sock: filepath.Join(e.root, "tray.sock"), log: &lockedBuffer{}, exited: make(chan struct{})}
	home := filepath.Join(e.root, "trayhome") // fyne keeps its preferences under $HOME
	os.MkdirAll(home, 0o700)
	tr.cmd = exec.Command(bin, "--instance", "default", "--berth", os.Getenv("BERTH_BIN"), "--automation", tr.sock, "-v")
	// A fixed scale: fyne otherwise derives it from the (virtual) monitor's DPI.
	tr.cmd.Env = append(e.environ(), "DISPLAY="+display, "LANG=en_US.UTF-8", "FYNE_SCALE=1", "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	if withBus {
		if tr.bus = startSessionBus(e.t, e.root); tr.bus == "" {
			e.t.Fatal("no dbus-daemon (apt-get install dbus-daemon)")
		}
		tr.cmd.Env = append(tr.cmd.Env, "DBUS_SESSION_BUS_ADDRESS="+tr.bus)
	} else {
		// No session bus, and no dbus-launch to start one: berth-tray has no tray.
		tr.cmd.Env = append(tr.cmd.Env, "DBUS_SESSION_BUS_ADDRESS=", "XDG_RUNTIME_DIR=", "PATH=/nonexistent")
	}
	tr.cmd.Stdout, tr.cmd.Stderr = tr.log, tr.log
	if err := tr.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		tr.err = tr.cmd.Wait()
		close(tr.exited)
	}()
	e.t.Cleanup(func() {
		select {
		case <-tr.exited:
		default:
			tr.cmd.Process.Signal(os.Interrupt)
			select {
			case <-tr.exited:
			case <-time.After(10 * time.Second):
				tr.cmd.Process.Kill()
				<-tr.exited
			}
		}
		e.t.Logf("==== berth-tray output ====\n%s", tr.log.String())
	})
	tr.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", tr.sock)
	}}, Timeout: time.Minute}
	tr.waitFor("the automation hook", 60*time.Second, func(gui.AutomationState) bool { return true })
	return tr
}

func (tr *tray) state() (gui.AutomationState, error) {
	var st gui.AutomationState
	resp, err := tr.client.Get("http://tray/state")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (tr *tray) waitFor(what string, timeout time.Duration, cond func(gui.AutomationState) bool) gui.AutomationState {
	tr.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := tr.state()
		if err == nil && cond(st) {
			return st
		}
		select {
		case <-tr.exited:
			tr.t.Fatalf("berth-tray exited (%v) while waiting for %s:\n%s", tr.err, what, tr.log.String())
		default:
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("timed out after %s waiting for %s: last state %+v (%v)", timeout, what, st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (tr *tray) post(path string) string {
	tr.t.Helper()
	resp, err := tr.client.Post("http://tray"+path, "", nil)
	if err != nil {
		tr.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		tr.t.Fatalf("POST %s: %s %s", path, resp.Status, b)
	}
	return string(b)
}

func (tr *tray) click(item string) { tr.post("/click?item=" + url.QueryEscape(item)) }

func (tr *tray) screenshot(window, path string) string {
	return tr.post("/screenshot?window=" + window + "&path=" + url.QueryEscape(path))
}

// waitBerthState polls `berth status --json` until the instance reaches state.
func (e *env) waitBerthState(state string, timeout time.Duration) api.Status {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cmd := exec.Command(os.Getenv("BERTH_BIN"), "status", "--json", "default")
		cmd.Env = e.environ()
		out, _ := cmd.Output()
		var st api.Status
		if json.Unmarshal(out, &st) == nil && st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("instance not %s after %s: %s", state, timeout, out)
		}
		time.Sleep(time.Second)
	}
}

// trayBus uses berth-tray's tray icon as a desktop's tray host does: the
// StatusNotifierItem (icon, tooltip) and its com.canonical.dbusmenu (the menu) on the
// session bus.
type trayBus struct {
	t    testing.TB
	conn *dbus.Conn
	name string // org.kde.StatusNotifierItem-PID-1
}

func (tr *tray) connectBus() *trayBus {
	tr.t.Helper()
	conn, err := dbus.Connect(tr.bus)
	if err != nil {
		tr.t.Fatalf("session bus: %v", err)
	}
	tr.t.Cleanup(func() { conn.Close() })
	b := &trayBus{t: tr.t, conn: conn, name: fmt.Sprintf("org.kde.StatusNotifierItem-%d-1", tr.cmd.Process.Pid)}
	deadline := time.Now().Add(time.Minute)
	for {
		var has bool
		conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, b.name).Store(&has)
		if has {
			return b
		}
		select {
		case <-tr.exited:
			tr.t.Fatalf("berth-tray exited (%v) before its tray icon showed:\n%s", tr.err, tr.log.String())
		default:
		}
		if time.Now().After(deadline) {
			tr.t.Fatalf("no %s on the session bus after a minute:\n%s", b.name, tr.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// menuEntry is one item of the tray menu as the bus shows it.
type menuEntry struct {
	id      int32
	label   string
	enabled bool
}

// menu reads the menu (GetLayout), separators left out.
func (b *trayBus) menu() ([]menuEntry, error) {
	var rev uint32
	var root struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	err := b.conn.Object(b.name, "/StatusNotifierMenu").Call("com.canonical.dbusmenu.GetLayout", 0,
		int32(0), int32(-1), []string{}).Store(&rev, &root)
	if err != nil {
		return nil, err
	}
	var out []menuEntry
	for _, c := range root.Children {
		v, ok := c.Value().([]any)
		if !ok || len(v) < 2 {
			return nil, fmt.Errorf("menu item %v", c)
		}
		props, _ := v[1].(map[string]dbus.Variant)
		if t, ok := props["type"]; ok && t.Value() == "separator" {
			continue
		}
		e := menuEntry{id: v[0].(int32), enabled: true} // dbusmenu: enabled unless said
		if l, ok := props["label"]; ok {
			e.label, _ = l.Value().(string)
		}
		if en, ok := props["enabled"]; ok {
			e.enabled, _ = en.Value().(bool)
		}
		out = append(out, e)
	}
	return out, nil
}

// look tells which of the tray's icons (gui.IconPNG) the bus shows, or "?".
func (b *trayBus) look() string {
	v, err := b.conn.Object(b.name, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.IconPixmap")
	if err != nil {
		return "? " + err.Error()
	}
	var px []struct {
		W, H int32
		Pix  []byte
	}
	if err := v.Store(&px); err != nil || len(px) == 0 {
		return fmt.Sprintf("? %v", err)
	}
	for l := gui.LookStopped; l <= gui.LookError; l++ {
		img, _ := png.Decode(bytes.NewReader(gui.IconPNG(l)))
		if int(px[0].W) == img.Bounds().Dx() && sameOpaquePixels(px[0].Pix, img) {
			return l.String()
		}
	}
	return "?"
}

// sameOpaquePixels compares a StatusNotifierItem pixmap (ARGB32, network byte order) with
// an image on the image's opaque pixels — the body of the icon; the antialiased edge is
// left out, as premultiplied and straight alpha round it differently.
func sameOpaquePixels(argb []byte, img stdimage.Image) bool {
	b := img.Bounds()
	if len(argb) != b.Dx()*b.Dy()*4 {
		return false
	}
	opaque := 0
	i := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			if a == 0xffff {
				opaque++
				if argb[i] != 0xff || argb[i+1] != byte(r>>8) || argb[i+2] != byte(g>>8) || argb[i+3] != byte(bl>>8) {
					return false
				}
			}
			i += 4
		}
	}
	return opaque > 0
}

// tooltip returns the icon's tooltip title.
func (b *trayBus) tooltip() string {
	v, err := b.conn.Object(b.name, "/StatusNotifierItem").GetProperty("org.kde.StatusNotifierItem.ToolTip")
	if err != nil {
		return err.Error()
	}
	var tip struct {
		Name  string
		Icons []struct {
			W, H int32
			Pix  []byte
		}
		Title, Desc string
	}
	if err := v.Store(&tip); err != nil {
		return err.Error()
	}
	return tip.Title
}

// waitFor polls the icon and menu until cond holds.
func (b *trayBus) waitFor(what string, timeout time.Duration, cond func(look string, menu map[string]menuEntry) bool) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		entries, err := b.menu()
		byLabel := map[string]menuEntry{}
		for _, e := range entries {
			byLabel[e.label] = e
		}
		look := b.look()
		if err == nil && cond(look, byLabel) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %s waiting for %s: icon %s, menu %+v (%v)", timeout, what, look, entries, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// click sends a click on the item with this label, as the desktop does when the user
// picks it.
func (b *trayBus) click(label string) {
	b.t.Helper()
	entries, err := b.menu()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, e := range entries {
		if e.label == label {
			if !e.enabled {
				b.t.Fatalf("menu item %q is disabled: %+v", label, entries)
			}
			err := b.conn.Object(b.name, "/StatusNotifierMenu").Call("com.canonical.dbusmenu.Event", 0,
				e.id, "clicked", dbus.MakeVariant(""), uint32(0)).Err
			if err != nil {
				b.t.Fatalf("click %q: %v", label, err)
			}
			return
		}
	}
	b.t.Fatalf("no menu item %q: %+v", label, entries)
}

// windowProcs lists berth-tray's window processes (children with --window NAME).
func windowProcs(trayPid int) map[string]int {
	out := map[string]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid != trayPid {
			continue
		}
		cmdline, _ := os.ReadFile(d + "/cmdline")
		args := strings.Split(string(cmdline), "\x00")
		for i, a := range args {
			if a == "--window" && i+1 < len(args) {
				pid, _ := strconv.Atoi(filepath.Base(d))
				out[args[i+1]] = pid
			}
		}
	}
	return out
}

// TestTray starts an instance and a container, then uses the tray as a user does,
// through the desktop's tray protocol: the icon and menu follow the instance, the
// container window (a process of its own, saved as a PNG) shows the container and its
// port link, Copy fills the clipboard, Open shell opens a terminal with a shell in the
// VM, Stop (which ends that shell) and Start work from the menu, and Quit
// closes the windows and leaves the VM running. Then the no-tray mode (no D-Bus).
func TestTray(t *testing.T) {
	for _, tool := range []string{"xclip", "xterm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (apt-get install %s; make deps does): %v", tool, tool, err)
		}
	}
	e, display, tr, bus := trayOverWeb(t, 8080)
	bus.waitFor("the tray to show the running instance", 2*time.Minute, func(look string, m map[string]menuEntry) bool {
		return look == "running" && m["default: running"].id != 0 && m[gui.ItemStop].enabled && !m[gui.ItemStart].enabled
	})
	if tip := bus.tooltip(); tip != "berth — default: running" {
		t.Errorf("tooltip %q", tip)
	}
	if w := windowProcs(tr.cmd.Process.Pid); len(w) != 0 {
		t.Errorf("window processes before any window was opened: %v", w)
	}
	st := tr.waitFor("the container in the tray's state", 2*time.Minute, func(st gui.AutomationState) bool {
		for _, c := range st.Containers {
			if c.Name == "web" && c.State == "running" && len(c.Ports) > 0 {
				return true
			}
		}
		return false
	})
	for _, c := range st.Containers {
		if c.Name == "web" && (c.Ports[0].Label() != "localhost:8080" || c.Ports[0].URL().String() != "http://localhost:8080/") {
			t.Errorf("web's port: %+v", c.Ports)
		}
	}
	// The link leads to the container, unless the host port is taken by something else
	// (then hostd reports the port failed, and so does the window).
	forwarded := false
	for _, p := range e.status("default").Ports {
		forwarded = forwarded || (p.HostPort == 8080 && p.State == "active")
	}
	if forwarded {
		resp, err := http.Get("http://localhost:8080/")
		if err != nil {
			t.Errorf("the port link: %v", err)
		} else {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "hello from 80") {
				t.Errorf("the port link answered %q", b)
			}
		}
	} else {
		t.Logf("host port 8080 is not forwarded (in use?): the link is not followed")
	}

	// Containers… opens the window in a process of its own.
	bus.click(gui.ItemContainers)
	waitUntil(t, "the container window's process", 30*time.Second, func() bool {
		return windowProcs(tr.cmd.Process.Pid)[gui.WindowContainers] != 0
	})
	shot := filepath.Join(e.root, "tray-containers.png")
	t.Logf("screenshot: %s", tr.screenshot(gui.WindowContainers, shot))
	checkScreenshot(t, shot, true)
	if dir := os.Getenv("BERTH_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(shot)
		dst := filepath.Join(dir, "tray-containers.png")
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs(dst)
		t.Logf("screenshot of the container window: %s", abs)
	}
	bus.click(gui.ItemContainers) // raises the same window, no second process
	time.Sleep(500 * time.Millisecond)
	if w := windowProcs(tr.cmd.Process.Pid); len(w) != 1 {
		t.Errorf("window processes after opening the container window twice: %v", w)
	}

	// Copy `docker context use berth` puts the command on the X clipboard.
	bus.click("Copy `docker context use berth`")
	waitUntil(t, "the clipboard", 10*time.Second, func() bool {
		out, _ := exec.Command("xclip", "-o", "-selection", "clipboard", "-display", display).Output()
		return string(out) == "docker context use berth"
	})

	// Open shell opens the user's terminal — x-terminal-emulator, xterm here — running
	// `berth shell default`: an interactive shell on a pty in the VM.
	bus.click(gui.ItemShell)
	waitUntil(t, "a shell on a pty in the VM", time.Minute, func() bool {
		// The processes whose stdin is a pty (this check's own is a pipe); the guest has no grep.
		out, _ := e.berth("shell", "default", "--", "sh", "-c",
			`for f in /proc/[0-9]*/fd/0; do l=$(readlink $f) && case $l in /dev/pts/*) echo "$l";; esac; done`)
		return strings.Contains(out, "/dev/pts/")
	})

	bus.click(gui.ItemStop)
	e.waitBerthState(api.StateStopped, 5*time.Minute)
	bus.waitFor("the tray to show stopped", time.Minute, func(look string, m map[string]menuEntry) bool {
		return look == "stopped" && m[gui.ItemStart].enabled && !m[gui.ItemStop].enabled
	})

	bus.click(gui.ItemStart)
	bus.waitFor("the tray to show starting", time.Minute, func(look string, _ map[string]menuEntry) bool {
		return look == "starting" || look == "running"
	})
	s := e.waitBerthState(api.StateRunning, 15*time.Minute)
	t.Logf("started from the tray: phases %+v", s.Phases)
	bus.waitFor("the tray to show running", 2*time.Minute, func(look string, m map[string]menuEntry) bool {
		return look == "running" && m[gui.ItemStop].enabled && m[gui.ItemShell].enabled
	})
	// The container (no restart policy) is listed, exited, after the VM restart.
	tr.waitFor("the container list after the restart", 2*time.Minute, func(st gui.AutomationState) bool {
		for _, c := range st.Containers {
			if c.Name == "web" {
				return true
			}
		}
		return false
	})

	// Quit, with the default "leave the VM running": the window goes with the tray.
	windows := windowProcs(tr.cmd.Process.Pid)
	bus.click(gui.ItemQuit)
	select {
	case <-tr.exited:
		if tr.err != nil {
			t.Errorf("berth-tray exited with %v", tr.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("berth-tray did not quit")
	}
	for name, pid := range windows {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("the %s window process %d outlived the tray", name, pid)
		}
	}
	if st := e.status("default"); st.State != api.StateRunning {
		t.Errorf("after Quit the instance is %s, want it left running", st.State)
	}

	// Without a D-Bus session there is no tray: one process shows the container window
	// with the menu as its menu bar, and closing it quits.
	nt := e.startTray(display, false)
	nt.waitFor("the no-tray window", 2*time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "running" && len(st.Containers) > 0
	})
	noTray := filepath.Join(e.root, "no-tray.png")
	t.Logf("screenshot without a tray: %s", nt.screenshot(gui.WindowContainers, noTray))
	checkScreenshot(t, noTray, false) // web exited with the VM restart: no port link
	nt.click(gui.ItemQuit)
	select {
	case <-nt.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("berth-tray (no tray) did not quit")
	}
}

// waitUntil polls cond.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkScreenshot asserts that the PNG is a real capture: a window-sized image with
// many colours (text, the icon, the port link when wantLink), not a blank frame.
func checkScreenshot(t *testing.T, path string, wantLink bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", path, err)
	}
	b := img.Bounds()
	colors := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, a := img.At(x, y).RGBA()
			colors[[4]uint32{r >> 8, g >> 8, bl >> 8, a >> 8}] = true
		}
	}
	st, _ := os.Stat(path)
	t.Logf("screenshot %s: %dx%d, %d bytes, %d colours", path, b.Dx(), b.Dy(), st.Size(), len(colors))
	if b.Dx() < 400 || b.Dy() < 200 || len(colors) < 16 || st.Size() < 8<<10 {
		t.Errorf("the screenshot looks empty: %dx%d, %d colours, %d bytes", b.Dx(), b.Dy(), len(colors), st.Size())
	}
	if wantLink && !hasLinkBlue(img) {
		t.Error("the screenshot shows no hyperlink (the port link)")
	}
}

// hasLinkBlue looks for the theme's hyperlink colour (primary blue) in a row of pixels.
func hasLinkBlue(img stdimage.Image) bool {
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if bl>>8 > 180 && r>>8 < 120 && g>>8 > 80 && g>>8 < 190 {
				n++
			}
		}
	}
	return n > 20
}

// procCPU returns the CPU time a process has used: the sum of its threads' run time
// in /proc/PID/task/*/schedstat (nanoseconds; the 10 ms ticks of /proc/PID/stat are too
// coarse for a process that is meant to use next to nothing).
func procCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no process %d", pid)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		f := strings.Fields(string(b))
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		total += time.Duration(ns)
	}
	return total, nil
}

// BenchmarkTrayIdle measures berth-tray's CPU use while nothing happens: the instance
// runs, the tray follows its event stream and the engine's, no window is open; then
// with the container window open (its own process: the tray's and the window's CPU are
// reported apart). Reported as % of one core.
//
//	BERTH_TRAY_IDLE=60s (default) sets the measuring time of the first phase.
func BenchmarkTrayIdle(b *testing.B) {
	idle := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BERTH_TRAY_IDLE")); err == nil {
		idle = d
	}
	_, _, tr, bus := trayOverWeb(b, 18080)
	tr.waitFor("running with the container", 2*time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "running" && len(st.Containers) == 1
	})
	// measure returns the CPU of each process over d, as % of one core.
	measure := func(d time.Duration, pids ...int) []float64 {
		time.Sleep(5 * time.Second) // settle
		c0 := make([]time.Duration, len(pids))
		for i, pid := range pids {
			var err error
			if c0[i], err = procCPU(pid); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		time.Sleep(d)
		out := make([]float64, len(pids))
		for i, pid := range pids {
			c1, err := procCPU(pid)
			if err != nil {
				b.Fatal(err)
			}
			out[i] = float64(c1-c0[i]) / float64(time.Since(t0)) * 100
		}
		return out
	}
	pid := tr.cmd.Process.Pid
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hidden := measure(idle, pid)[0]
		bus.click(gui.ItemContainers)
		var window int
		waitUntil(b, "the container window", 30*time.Second, func() bool {
			window = windowProcs(pid)[gui.WindowContainers]
			return window != 0
		})
		shown := measure(idle/2, pid, window)
		b.ReportMetric(hidden, "%cpu-idle")
		b.ReportMetric(shown[0], "%cpu-tray-window-open")
		b.ReportMetric(shown[1], "%cpu-window")
		b.Logf("berth-tray idle CPU: %.4f%% of one core with no window; with the container window open: tray %.4f%%, window process %.2f%%",
			hidden, shown[0], shown[1])
	}
}
