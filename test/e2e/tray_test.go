//go:build e2e

package e2e

import (
	"bufio"
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
)

// The tray tests run the real berth-tray binary on a private X server (Xvfb) against a
// real instance, and drive it through its automation hook (docs/tray.md): the same menu
// actions a click runs, and the container window captured from its GL canvas.

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

func (e *env) startTray(display string) *tray {
	e.t.Helper()
	bin := trayBin(e.t)
	tr := &tray{t: e.t, sock: filepath.Join(e.root, "tray.sock"), log: &lockedBuffer{}, exited: make(chan struct{})}
	home := filepath.Join(e.root, "trayhome") // fyne keeps its preferences under $HOME
	os.MkdirAll(home, 0o700)
	tr.cmd = exec.Command(bin, "--instance", "default", "--berth", os.Getenv("BERTH_BIN"), "--automation", tr.sock)
	// A fixed scale: fyne otherwise derives it from the (virtual) monitor's DPI.
	tr.cmd.Env = append(e.environ(), "DISPLAY="+display, "LANG=en_US.UTF-8", "FYNE_SCALE=1", "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	if bus := startSessionBus(e.t, e.root); bus != "" {
		tr.cmd.Env = append(tr.cmd.Env, "DBUS_SESSION_BUS_ADDRESS="+bus)
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

func menuEnabled(st gui.AutomationState, id string) bool {
	for _, m := range st.Menu {
		if m.ID == id {
			return m.Enabled
		}
	}
	return false
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

// TestTray starts an instance and a container, then drives the tray: the container
// window (saved as a PNG), Stop and Start from the menu, Quit leaving the VM running.
func TestTray(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start", "--cpus", "2", "--memory", "2")
	e.busyboxImage(image)
	e.mustDocker("run", "-d", "--name", "web", "-p", "8080:80", image, "testsrv", "http", "80")

	display := startXvfb(t)
	tr := e.startTray(display)
	st := tr.waitFor("the running instance and its container", 2*time.Minute, func(st gui.AutomationState) bool {
		for _, c := range st.Containers {
			if c.Name == "web" && c.State == "running" && len(c.Ports) > 0 {
				return st.Look == "running"
			}
		}
		return false
	})
	if !menuEnabled(st, gui.ItemStop) || menuEnabled(st, gui.ItemStart) {
		t.Errorf("menu while running: %+v", st.Menu)
	}
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

	shot := filepath.Join(e.root, "tray-containers.png")
	t.Logf("screenshot: %s", tr.screenshot("containers", shot))
	checkScreenshot(t, shot)
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

	tr.click(gui.ItemStop)
	e.waitBerthState(api.StateStopped, 5*time.Minute)
	tr.waitFor("the tray to show stopped", time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "stopped" && menuEnabled(st, gui.ItemStart) && len(st.Containers) == 0
	})

	tr.click(gui.ItemStart)
	tr.waitFor("the tray to show starting", time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "starting" || st.Look == "running"
	})
	s := e.waitBerthState(api.StateRunning, 15*time.Minute)
	t.Logf("started from the tray: phases %+v", s.Phases)
	tr.waitFor("the tray to show running", 2*time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "running" && menuEnabled(st, gui.ItemStop) && st.Busy == ""
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

	// Quit, with the default "leave the VM running".
	tr.click(gui.ItemQuit)
	select {
	case <-tr.exited:
		if tr.err != nil {
			t.Errorf("berth-tray exited with %v", tr.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("berth-tray did not quit")
	}
	if st := e.status("default"); st.State != api.StateRunning {
		t.Errorf("after Quit the instance is %s, want it left running", st.State)
	}
}

// checkScreenshot asserts that the PNG is a real capture: a window-sized image with
// many colours (text, the port link, the icon), not a blank frame.
func checkScreenshot(t *testing.T, path string) {
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
	if !hasLinkBlue(img) {
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

// procCPU returns the user+system CPU time of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces), from field 3 on.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	const clkTck = 100                          // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// BenchmarkTrayIdle measures berth-tray's CPU use while nothing happens: the instance
// runs, the tray follows its event stream and the engine's, no window is open; then the
// same with the container window open. Reported as % of one core.
//
//	BERTH_TRAY_IDLE=60s (default) sets the measuring time of the first phase.
func BenchmarkTrayIdle(b *testing.B) {
	idle := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("BERTH_TRAY_IDLE")); err == nil {
		idle = d
	}
	e := newEnv(b)
	e.mustBerth("start", "--cpus", "2", "--memory", "2")
	e.busyboxImage(image)
	e.mustDocker("run", "-d", "--name", "web", "-p", "18080:80", image, "testsrv", "http", "80")
	display := startXvfb(b)
	tr := e.startTray(display)
	tr.waitFor("running with the container", 2*time.Minute, func(st gui.AutomationState) bool {
		return st.Look == "running" && len(st.Containers) == 1
	})
	measure := func(d time.Duration) float64 {
		time.Sleep(5 * time.Second) // settle
		c0, err := procCPU(tr.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		time.Sleep(d)
		c1, _ := procCPU(tr.cmd.Process.Pid)
		return float64(c1-c0) / float64(time.Since(t0)) * 100
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hidden := measure(idle)
		tr.screenshot("containers", filepath.Join(e.root, "idle.png")) // opens the window
		shown := measure(idle / 2)
		b.ReportMetric(hidden, "%cpu-idle")
		b.ReportMetric(shown, "%cpu-window-open")
		b.Logf("berth-tray idle CPU: %.2f%% of one core with no window, %.2f%% with the container window open", hidden, shown)
	}
}
