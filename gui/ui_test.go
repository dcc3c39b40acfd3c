package gui

import (
	"context"
	"encoding/json"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/software"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// uiLoop is the tests' UI goroutine: the controller's callbacks and the test's own
// clicks all run on it, one at a time, as on fyne's main goroutine.
type uiLoop struct {
	ch   chan func()
	done chan struct{}
}

func newUILoop(t *testing.T) *uiLoop {
	l := &uiLoop{ch: make(chan func()), done: make(chan struct{})}
	go func() {
		for {
			select {
			case f := <-l.ch:
				f()
			case <-l.done:
				return
			}
		}
	}()
	t.Cleanup(func() { close(l.done) })
	return l
}

// Do queues f without waiting (fyne.Do).
func (l *uiLoop) Do(f func()) {
	go func() {
		select {
		case l.ch <- f:
		case <-l.done:
		}
	}()
}

// Wait runs f on the loop and waits (fyne.DoAndWait).
func (l *uiLoop) Wait(f func()) {
	done := make(chan struct{})
	select {
	case l.ch <- func() { f(); close(done) }:
		<-done
	case <-l.done:
	}
}

// uiHarness is the UI on a fyne test app over a controller, a fake daemon and a fake
// engine.
type uiHarness struct {
	*harness
	app    fyne.App
	loop   *uiLoop
	ui     *UI
	tray   *Tray
	shells atomic.Int32
	quits  atomic.Int32
	home   string
}

func newUIHarness(t *testing.T, before func(*harness)) *uiHarness {
	t.Helper()
	t.Setenv("LANG", "en_US.UTF-8")
	u := &uiHarness{app: test.NewTempApp(t), loop: newUILoop(t)}
	var ready atomic.Bool
	u.harness = newHarnessAfter(t, nil, func() {
		if ready.Load() {
			u.ui.Changed()
			u.tray.Changed()
		}
	}, before)
	u.home = t.TempDir()
	as, err := NewAutostart("linux", u.home, "", "/usr/bin/berth-tray", []string{"--instance", "default"}, "default")
	if err != nil {
		t.Fatal(err)
	}
	u.loop.Wait(func() {
		u.ui = NewUI(UIOptions{App: u.app, Controller: u.ctrl, Autostart: as, Do: u.loop.Do})
		u.tray = NewTray(TrayOptions{Controller: u.ctrl, Do: u.loop.Do, ShowWindow: u.ui.Show, Berth: "/usr/bin/berth",
			OpenShell: func() error { u.shells.Add(1); return nil },
			Copy:      func(s string) error { u.app.Clipboard().SetContent(s); return nil },
			Quit:      func() { u.quits.Add(1) }})
	})
	ready.Store(true)
	u.ui.Changed() // catch up with what happened before
	u.tray.Changed()
	t.Cleanup(u.ui.Close)
	t.Cleanup(u.tray.Close)
	return u
}

// until waits for cond, evaluated on the UI loop.
func (u *uiHarness) until(what string, cond func() bool) {
	u.t.Helper()
	waitFor(u.t, what, func() bool {
		var ok bool
		u.loop.Wait(func() { ok = cond() })
		return ok
	})
}

func (u *uiHarness) click(name string) {
	u.t.Helper()
	var err error
	u.loop.Wait(func() { err = u.tray.Click(name) })
	if err != nil {
		u.t.Fatal(err)
	}
}

func (u *uiHarness) item(id string) *fyne.MenuItem { return u.tray.items[id] }

func TestTrayMenu(t *testing.T) {
	u := newUIHarness(t, nil)
	u.until("stopped menu", func() bool {
		return u.tray.Icon().Name() == "berth-stopped.png" && !u.item(ItemStart).Disabled && u.item(ItemStop).Disabled
	})
	if got := u.item(ItemStatus).Label; got != "default: stopped" {
		t.Errorf("status item %q", got)
	}
	var err error
	u.loop.Wait(func() { err = u.tray.Click(ItemStop) })
	if err == nil || !strings.Contains(err.Error(), "disabled") {
		t.Errorf("clicking a disabled item: %v", err)
	}

	u.click(ItemStart)
	u.until("running menu", func() bool {
		return u.tray.Icon().Name() == "berth-running.png" && u.item(ItemStart).Disabled && !u.item(ItemStop).Disabled &&
			!u.item(ItemRestart).Disabled && !u.item(ItemShell).Disabled && u.item(ItemStatus).Label == "default: running"
	})

	u.click(ItemShell)
	if u.shells.Load() != 1 {
		t.Error("Open shell did not open a terminal")
	}
	u.click("Copy `docker context use berth`") // by label, as the automation hook may
	if got := u.app.Clipboard().Content(); got != "docker context use berth" {
		t.Errorf("clipboard %q", got)
	}

	u.click(ItemStop)
	u.until("stopped again", func() bool {
		return u.tray.Icon().Name() == "berth-stopped.png" && !u.item(ItemStart).Disabled
	})
	if u.inst.DaemonPID() != 0 {
		t.Error("the daemon still runs")
	}

	// Quit with "leave the VM running" (the default) leaves it running.
	u.click(ItemStart)
	u.until("running", func() bool { return u.tray.Icon().Name() == "berth-running.png" })
	u.click(ItemQuit)
	if u.quits.Load() != 1 || u.inst.DaemonPID() == 0 {
		t.Errorf("Quit: %d quits, daemon %d", u.quits.Load(), u.inst.DaemonPID())
	}
	// Quit with "stop the VM" (the tray's settings file) stops it, then quits.
	if err := SaveSettings(Settings{StopOnQuit: true}); err != nil {
		t.Fatal(err)
	}
	u.tray.ctx, u.tray.cancel = context.WithCancel(context.Background())
	u.click(ItemQuit)
	waitFor(t, "the VM to stop on quit", func() bool { return u.inst.DaemonPID() == 0 && u.quits.Load() == 2 })
}

func TestTrayNotifications(t *testing.T) {
	var f *fakeHostd
	u := newUIHarness(t, func(h *harness) { f = h.startDaemon(); f.run() })
	u.until("running", func() bool { return u.tray.Icon().Name() == "berth-running.png" })
	f.end(api.StateError, "the VM exited: qemu: signal: killed")
	u.until("error icon", func() bool { return u.tray.Icon().Name() == "berth-error.png" })
	if !u.notes.has("the VM stopped: the VM exited") {
		t.Errorf("notifications %q", u.notes.all())
	}
}

func TestContainerWindow(t *testing.T) {
	u := newUIHarness(t, func(h *harness) {
		h.engine.run("c1", "web", "berth-e2e/busybox:latest", [2]int{8080, 80})
		h.engine.run("c2", "db", "postgres:16", [2]int{5432, 5432})
		h.startDaemon().run()
	})
	u.until("the list", func() bool { return len(u.ctrl.Snapshot().Containers) == 2 })
	lists := u.engine.lists.Load()
	u.click(ItemContainers)
	cw := u.ui.containers
	u.until("two rows", func() bool { return len(cw.rows) == 2 })
	// Opening the window lists once more: the status texts ("Up 3 minutes") age.
	waitFor(t, "a list on open", func() bool { return u.engine.lists.Load() > lists })
	var web *containerRow
	u.loop.Wait(func() {
		web = cw.rows["web"]
		if web.image.Text != "berth-e2e/busybox:latest" || !strings.HasPrefix(web.state.Text, "running") {
			t.Errorf("row %q %q", web.image.Text, web.state.Text)
		}
		if len(web.links) != 1 || web.links[0].Text != "localhost:8080" || web.links[0].URL.String() != "http://localhost:8080/" {
			t.Errorf("links %+v", web.links)
		}
		if web.start.Disabled() == false || web.stop.Disabled() {
			t.Error("a running container's buttons")
		}
		if !strings.Contains(cw.headline.Text, "running") || !cw.start.Hidden {
			t.Errorf("header %q, start shown %v", cw.headline.Text, !cw.start.Hidden)
		}
		test.Tap(web.stop)
	})
	u.until("web stopped", func() bool { return strings.HasPrefix(cw.rows["web"].state.Text, "exited") })
	u.loop.Wait(func() { test.Tap(cw.rows["web"].start) })
	u.until("web running", func() bool { return strings.HasPrefix(cw.rows["web"].state.Text, "running") })
	u.loop.Wait(func() { test.Tap(cw.rows["web"].restart) })
	waitFor(t, "the restart", func() bool { return strings.Contains(strings.Join(u.engine.Actions(), ";"), "restart c1") })

	// Logs open in their own window.
	u.loop.Wait(func() { test.Tap(cw.rows["web"].logs) })
	var logs fyne.Window
	u.until("the logs window", func() bool {
		for _, w := range u.app.Driver().AllWindows() {
			if w.Title() == "Logs: web" {
				logs = w
				return true
			}
		}
		return false
	})
	u.until("the log text", func() bool {
		for _, o := range test.LaidOutObjects(logs.Content()) {
			if g, ok := o.(*widget.TextGrid); ok && strings.Contains(g.Text(), "hello from stdout\noops on stderr") {
				return true
			}
		}
		return false
	})

	saveScreenshot(t, u, cw.win, "containers.png")

	// Remove asks first.
	u.loop.Wait(func() { test.Tap(cw.rows["db"].remove) })
	u.loop.Wait(func() {
		yes := findButton(cw.win.Canvas().Overlays().Top(), "Yes")
		if yes == nil {
			t.Fatal("no confirmation")
		}
		test.Tap(yes)
	})
	u.until("db removed", func() bool { return len(cw.rows) == 1 && cw.rows["db"] == nil })
	if a := u.engine.Actions(); a[len(a)-1] != "remove c2 force=1" {
		t.Errorf("actions %q", a)
	}

	// Stopped: the list empties and the window offers Start.
	u.click(ItemStop)
	u.until("empty stopped window", func() bool {
		return len(cw.rows) == 0 && !cw.start.Hidden && strings.Contains(cw.empty.Text, "while the VM runs")
	})
}

func TestPreferencesWindow(t *testing.T) {
	var f *fakeHostd
	u := newUIHarness(t, func(h *harness) { f = h.startDaemon(); f.run() })
	u.until("running", func() bool { return u.tray.Icon().Name() == "berth-running.png" })
	u.click(ItemPreferences)
	p := u.ui.prefs
	u.loop.Wait(func() {
		def := store.DefaultConfig()
		if p.memory.Text != "2" || p.disk.Text != "64" || p.bind.Selected != "127.0.0.1" || p.quit.Selected != quitLeaveRunning || p.login.Checked {
			t.Errorf("form: cpus %q memory %q disk %q bind %q quit %q login %v (defaults %+v)",
				p.cpus.Text, p.memory.Text, p.disk.Text, p.bind.Selected, p.quit.Selected, p.login.Checked, def)
		}
		// Shrinking the disk is refused, and nothing is written.
		p.disk.SetText("32")
		test.Tap(p.save)
		if !strings.Contains(p.message.Text, "can only grow") || p.message.Importance != widget.DangerImportance {
			t.Errorf("message %q", p.message.Text)
		}
		p.cpus.SetText("many")
		test.Tap(p.save)
		if !strings.Contains(p.message.Text, "not a whole number") {
			t.Errorf("message %q", p.message.Text)
		}
	})
	if cfg, _ := u.inst.Config(); cfg.Disk != 64 {
		t.Fatalf("an invalid form was saved: %+v", cfg)
	}

	// A valid change while running is saved, and a restart is offered.
	u.loop.Wait(func() {
		p.cpus.SetText("1")
		p.memory.SetText("3")
		p.disk.SetText("80")
		p.bind.SetSelected("0.0.0.0")
		p.quit.SetSelected(quitStopVM)
		test.Tap(p.login)
		test.Tap(p.save)
		if p.restartBox.Hidden || !strings.Contains(p.message.Text, "until it restarts") {
			t.Errorf("no restart offered: %q", p.message.Text)
		}
	})
	cfg, _ := u.inst.Config()
	if cfg.CPUs != 1 || cfg.Memory != 3 || cfg.Disk != 80 || cfg.PortBindAddress != "0.0.0.0" {
		t.Errorf("saved %+v", cfg)
	}
	if !u.ui.StopOnQuit() {
		t.Error("the quit choice was not saved")
	}
	if _, err := os.Stat(filepath.Join(u.home, ".config", "autostart", "berth-tray.desktop")); err != nil {
		t.Errorf("start at login: %v", err)
	}
	saveScreenshot(t, u, p.win, "preferences.png")

	u.loop.Wait(func() { test.Tap(p.restart) })
	waitFor(t, "the restart", func() bool { return f.stops.Load() == 1 })
	u.until("running again", func() bool { return u.tray.Icon().Name() == "berth-running.png" && u.ctrl.Snapshot().Busy == "" })
	if u.daemon() == f {
		t.Error("no new daemon after the restart")
	}

	// Reopened, the form shows what was saved; unchecking start at login removes the entry.
	u.click(ItemPreferences)
	u.loop.Wait(func() {
		if p.cpus.Text != "1" || !p.login.Checked || p.quit.Selected != quitStopVM || !p.restartBox.Hidden {
			t.Errorf("reloaded form: cpus %q login %v quit %q", p.cpus.Text, p.login.Checked, p.quit.Selected)
		}
		test.Tap(p.login)
		test.Tap(p.save)
		if p.message.Text != "Saved." {
			t.Errorf("message %q", p.message.Text)
		}
	})
	if _, err := os.Stat(filepath.Join(u.home, ".config", "autostart", "berth-tray.desktop")); err == nil {
		t.Error("start at login still enabled")
	}
}

func TestPreferencesShares(t *testing.T) {
	dir := t.TempDir()
	src, data, missing := filepath.Join(dir, "src"), filepath.Join(dir, "data"), filepath.Join(dir, "missing")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.MkdirAll(data, 0o755)
	u := newUIHarness(t, func(h *harness) {
		// Settings the window does not show are not the defaults, to see that they are kept.
		cfg, _ := h.inst.Config()
		cfg.Shares = []fileshare.Share{{Path: src}}
		cfg.Accel, cfg.Images, cfg.BootTimeout, cfg.PortListeners = "tcg", "/x/images", 90, "all"
		if err := h.inst.SaveConfig(cfg); err != nil {
			t.Fatal(err)
		}
		h.startDaemon().run()
	})
	u.until("running", func() bool { return u.ctrl.Snapshot().State == api.StateRunning })
	before, _ := u.inst.Config()
	file := func() string {
		b, _ := os.ReadFile(u.inst.Path(store.ConfigFile))
		return string(b)
	}
	orig := file()
	u.loop.Wait(u.ui.ShowPreferences)
	p := u.ui.prefs
	add := func(path string) {
		p.sharePath.SetText(path)
		test.Tap(p.addShare)
	}
	u.loop.Wait(func() {
		if len(p.shareRows) != 1 || p.shareRows[0].path.Text != src || p.shareRows[0].readOnly.Checked || !p.shareRows[0].notify.Checked {
			t.Errorf("rows for %+v", p.shares)
		}
		// A share inside another one is refused, and nothing is written.
		add(" " + filepath.Join(src, "sub") + "/ ")
		if len(p.shareRows) != 2 || p.shareRows[1].path.Text != filepath.Join(src, "sub") || p.sharePath.Text != "" {
			t.Errorf("added %+v, entry %q", p.shares, p.sharePath.Text)
		}
		test.Tap(p.save)
		if !strings.Contains(p.message.Text, "overlap") || !strings.Contains(p.message.Text, src) || p.message.Importance != widget.DangerImportance {
			t.Errorf("message %q", p.message.Text)
		}
		// So is a folder that does not exist.
		test.Tap(p.shareRows[1].remove)
		add(missing)
		test.Tap(p.save)
		if !strings.Contains(p.message.Text, `share "`+missing+`"`) || !strings.Contains(p.message.Text, "no such file") {
			t.Errorf("message %q", p.message.Text)
		}
	})
	if file() != orig {
		t.Fatalf("an invalid share was saved:\n%s", file())
	}

	// A valid change is saved, and as the VM runs a restart is offered.
	u.loop.Wait(func() {
		test.Tap(p.shareRows[1].remove)
		add(data)
		test.Tap(p.shareRows[1].readOnly)
		if !p.shareRows[1].notify.Disabled() || p.shareRows[1].notify.Checked {
			t.Error("a read-only share can be notified")
		}
		test.Tap(p.shareRows[0].notify)
		test.Tap(p.save)
		if p.restartBox.Hidden || !strings.Contains(p.message.Text, "until it restarts") {
			t.Errorf("no restart offered: %q", p.message.Text)
		}
	})
	want := before
	want.Shares = []fileshare.Share{{Path: src, NoNotify: true}, {Path: data, ReadOnly: true}}
	if cfg, err := u.inst.Config(); err != nil || !reflect.DeepEqual(cfg, want) {
		t.Errorf("saved %+v, %v\nwant %+v", cfg, err, want)
	}
	saveScreenshot(t, u, p.win, "preferences-shares.png")

	// Removing every share shares nothing (not the default home directory).
	u.loop.Wait(func() {
		test.Tap(p.later)
		test.Tap(p.shareRows[1].remove)
		test.Tap(p.shareRows[0].remove)
		if len(p.shareRows) != 0 || len(p.shareList.Objects) != 1 {
			t.Errorf("rows %d, list %d", len(p.shareRows), len(p.shareList.Objects))
		}
		test.Tap(p.save)
	})
	if cfg, _ := u.inst.Config(); len(cfg.Shares) != 0 || !strings.Contains(file(), "shares: []") {
		t.Errorf("shares %+v in\n%s", cfg.Shares, file())
	}

	// Choose… opens a folder dialog; cancelled, it adds nothing.
	u.loop.Wait(func() {
		test.Tap(p.pickDir)
		cancel := findButton(p.win.Canvas().Overlays().Top(), "Cancel")
		if cancel == nil {
			t.Fatal("no folder dialog")
		}
		test.Tap(cancel)
		if len(p.shares) != 0 || p.win.Canvas().Overlays().Top() != nil {
			t.Errorf("after cancel: shares %+v", p.shares)
		}
	})
}

func TestLogsWindow(t *testing.T) {
	u := newUIHarness(t, func(h *harness) { h.startDaemon().run() })
	os.WriteFile(u.inst.Path(store.HostdLog), []byte("time=... msg=\"phase done\"\n"), 0o600)
	u.until("running", func() bool { return u.tray.Icon().Name() == "berth-running.png" })
	u.click(ItemLogs)
	l := u.ui.logs
	u.until("the daemon log", func() bool { return strings.Contains(l.text.Text(), "phase done") })
	u.loop.Wait(func() { l.which.SetSelected(LogEngine) })
	u.until("the engine log", func() bool { return strings.Contains(l.text.Text(), "engine log line 2") })
	u.loop.Wait(func() { l.which.SetSelected(LogConsole) })
	u.until("the missing console log", func() bool { return strings.Contains(l.status.Text, "does not exist") })
}

func TestAutomationHook(t *testing.T) {
	u := newUIHarness(t, func(h *harness) {
		h.engine.run("c1", "web", "berth-e2e/busybox:latest", [2]int{8080, 80})
		h.startDaemon().run()
	})
	sock := filepath.Join(u.inst.Dir, "a.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shoot := func(window, path string) (string, error) {
		return Screenshot(u.ui, window, path, u.loop.Wait, softwareCapture)
	}
	if err := ServeAutomation(ctx, sock, u.tray, u.loop.Wait, shoot); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(sock); st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", st.Mode())
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	state := func() AutomationState {
		resp, err := client.Get("http://tray/state")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st AutomationState
		json.NewDecoder(resp.Body).Decode(&st)
		return st
	}
	waitFor(t, "running with a container", func() bool {
		st := state()
		return st.Look == "running" && len(st.Containers) == 1
	})
	resp, err := client.Post("http://tray/click?item=Start", "", nil)
	if err != nil || resp.StatusCode != http.StatusConflict {
		t.Errorf("clicking disabled Start: %v %v", resp.Status, err)
	}
	png1 := filepath.Join(t.TempDir(), "c.png")
	resp, err = client.Post("http://tray/screenshot?window=containers&path="+png1, "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("screenshot: %v %v", resp.Status, err)
	}
	if f, err := os.Open(png1); err != nil {
		t.Error(err)
	} else if _, err := png.Decode(f); err != nil {
		t.Errorf("screenshot: %v", err)
	}
	resp, err = client.Post("http://tray/click?item=Stop", "", nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("click Stop: %v %v", resp.Status, err)
	}
	waitFor(t, "stopped", func() bool { return state().State == api.StateStopped })
}

func findButton(root fyne.CanvasObject, text string) *widget.Button {
	if root == nil {
		return nil
	}
	for _, o := range test.LaidOutObjects(root) {
		if b, ok := o.(*widget.Button); ok && b.Text == text {
			return b
		}
	}
	return nil
}

// softwareCapture renders a window's content with fyne's software painter: the test
// app's canvases paint nothing themselves.
func softwareCapture(w fyne.Window) (image.Image, error) {
	content := w.Content()
	c := software.NewCanvas()
	c.Resize(w.Canvas().Size())
	c.SetContent(content)
	img := c.Capture()
	w.SetContent(content)
	return img, nil
}

// saveScreenshot renders a window into $BERTH_GUI_SHOTS, to look at the layout.
func saveScreenshot(t *testing.T, u *uiHarness, w fyne.Window, name string) {
	dir := os.Getenv("BERTH_GUI_SHOTS")
	if dir == "" {
		return
	}
	u.loop.Wait(func() {
		if name == "preferences.png" {
			w.Resize(fyne.NewSize(560, w.Content().MinSize().Height+20))
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		img, _ := softwareCapture(w)
		png.Encode(f, img)
	})
}
