package gui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
)

// recordingHost is a TrayHost that keeps what it was asked to show.
type recordingHost struct {
	mu      sync.Mutex
	updates int
	icon    string
	tip     string
	labels  []string
}

func (h *recordingHost) Update(m *fyne.Menu, icon fyne.Resource, tip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.updates++
	h.icon, h.tip = icon.Name(), tip
	h.labels = nil
	for _, it := range m.Items {
		if !it.IsSeparator {
			h.labels = append(h.labels, fmt.Sprintf("%s:%v", it.Label, !it.Disabled))
		}
	}
}

func (h *recordingHost) shows(icon, tip string, labels ...string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.icon != icon || h.tip != tip {
		return false
	}
	all := strings.Join(h.labels, ",")
	for _, l := range labels {
		if !strings.Contains(all, l) {
			return false
		}
	}
	return true
}

func TestTrayHost(t *testing.T) {
	host := &recordingHost{}
	var tray *Tray
	loop := newUILoop(t)
	var ready sync.WaitGroup
	ready.Add(1)
	h := newHarnessAfter(t, nil, func() { ready.Wait(); tray.Changed() }, nil)
	var opened []string
	loop.Wait(func() {
		tray = NewTray(TrayOptions{Controller: h.ctrl, Host: host, Do: loop.Do,
			ShowWindow: func(name string) error { opened = append(opened, name); return nil },
			Quit:       func() {}})
	})
	ready.Done()
	t.Cleanup(tray.Close)
	if !host.shows("berth-stopped.png", "berth — default: stopped", "Start:true", "Stop:false") {
		t.Errorf("first update: %+v", host)
	}
	loop.Wait(func() { tray.Click(ItemStart) })
	waitFor(t, "the host to show running", func() bool {
		return host.shows("berth-running.png", "berth — default: running", "Start:false", "Stop:true", "Open shell:true")
	})
	n := host.updates
	loop.Wait(func() { tray.refresh(false) })
	if host.updates != n {
		t.Error("the host was updated although nothing changed")
	}
	loop.Wait(func() {
		tray.Click(ItemContainers)
		tray.Click(ItemPreferences)
		tray.Click(ItemLogs)
	})
	if got := strings.Join(opened, ","); got != "containers,preferences,logs" {
		t.Errorf("windows opened: %s", got)
	}
}

func TestSettings(t *testing.T) {
	t.Setenv("BERTH_HOME", t.TempDir())
	if LoadSettings().StopOnQuit {
		t.Error("stop on quit by default")
	}
	if err := SaveSettings(Settings{StopOnQuit: true}); err != nil {
		t.Fatal(err)
	}
	path, _ := SettingsFile()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("settings file: %v %v", st, err)
	}
	if !LoadSettings().StopOnQuit {
		t.Error("the setting was not kept")
	}
	os.WriteFile(path, []byte("{broken"), 0o600)
	if LoadSettings().StopOnQuit {
		t.Error("a broken file must give the defaults")
	}
}

// TestWindowProcs runs this test binary as a window process (windowHelper below) and
// drives it as the tray does: open, raise, screenshot, a click sent back, close.
func TestWindowProcs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clicks := make(chan string, 4)
	w := &WindowProcs{
		Command: func(name string) []string {
			return []string{exe, "-test.run=^TestWindowHelper$", "--", name, dir}
		},
		Click: func(item string) { clicks <- item },
	}
	t.Setenv("BERTH_GUI_WINDOW_HELPER", "1")
	if err := w.Show(WindowPreferences); err != nil {
		t.Fatal(err)
	}
	if item := <-clicks; item != "opened preferences" {
		t.Errorf("first message %q", item)
	}
	if err := w.Show(WindowPreferences); err != nil { // raises the same process
		t.Fatal(err)
	}
	if item := <-clicks; item != "shown preferences" {
		t.Errorf("after a second Show: %q", item)
	}
	png := filepath.Join(dir, "p.png")
	source, err := w.Screenshot(WindowPreferences, png)
	if err != nil || source != SourceCapture {
		t.Fatalf("screenshot: %q %v", source, err)
	}
	if b, _ := os.ReadFile(png); string(b) != "preferences" {
		t.Errorf("screenshot file %q", b)
	}
	if _, err := w.Screenshot(WindowPreferences, "/nonexistent/dir/x.png"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("a failed screenshot: %v", err)
	}
	w.Close(10 * time.Second)
	if b, err := os.ReadFile(filepath.Join(dir, "closed")); err != nil || string(b) != "preferences" {
		t.Errorf("the window process did not see the channel close: %q %v", b, err)
	}
	if err := w.Show(WindowLogs); err == nil {
		t.Error("Show after Close")
	}
}

// TestWindowHelper is the window process of TestWindowProcs (it does nothing when run
// as a test).
func TestWindowHelper(t *testing.T) {
	if os.Getenv("BERTH_GUI_WINDOW_HELPER") == "" {
		t.Skip("the window process of TestWindowProcs")
	}
	args := os.Args[len(os.Args)-2:]
	name, dir := args[0], args[1]
	done := make(chan struct{})
	var ch *WindowChannel
	ch = ServeWindowChannel(os.Stdin, os.Stdout, WindowRequests{
		Show: func() { ch.Click("shown " + name) },
		Screenshot: func(path string) (string, error) {
			return SourceCapture, os.WriteFile(path, []byte(name), 0o600)
		},
		Closed: func() {
			os.WriteFile(filepath.Join(dir, "closed"), []byte(name), 0o600)
			close(done)
		},
	})
	ch.Click("opened " + name)
	<-done
	os.Exit(0) // no test output on the channel
}
