package gui

import (
	"context"
	"fmt"
	"sync/atomic"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
)

// Autostarter switches start-at-login; Autostart implements it.
type Autostarter interface {
	Enabled() bool
	Set(on bool) error
}

// UIOptions configure the widgets.
type UIOptions struct {
	App        fyne.App
	Controller *Controller
	// Berth is the berth CLI, for Open shell.
	Berth string
	// Autostart is the login entry; nil hides the option.
	Autostart Autostarter
	// Do runs fn on the UI goroutine: fyne.Do when nil. Tests queue instead.
	Do func(fn func())
	// OpenShell opens a terminal with `berth shell`; OpenShell(Berth, name) when nil.
	OpenShell func() error
	// NoTray: the desktop has no tray to show (no D-Bus session on Linux). The menu
	// then lives in the container window's menu bar, that window opens at start, and
	// closing it quits.
	NoTray bool
}

// prefStopOnQuit is the fyne preference key of "Quit stops the VM".
const prefStopOnQuit = "stopOnQuit"

// UI is the tray menu and the windows: thin views over a Controller's Snapshot.
type UI struct {
	opts  UIOptions
	app   fyne.App
	ctrl  *Controller
	do    func(func())
	tray  desktop.App // nil where the driver has no tray (the test driver)
	menu  *fyne.Menu
	items map[string]*fyne.MenuItem
	look  Look
	icons [5]fyne.Resource

	containers *containersWindow
	prefs      *prefsWindow
	logs       *logsWindow

	pending atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewUI builds the tray menu (and installs it where the driver has a tray). Call it on the
// UI goroutine, before Controller.Run.
func NewUI(opts UIOptions) *UI {
	u := &UI{opts: opts, app: opts.App, ctrl: opts.Controller, do: opts.Do, items: map[string]*fyne.MenuItem{}, look: -1}
	if u.do == nil {
		u.do = fyne.Do
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	for l := LookStopped; l <= LookError; l++ {
		u.icons[l] = fyne.NewStaticResource("berth-"+l.String()+".png", IconPNG(l))
	}
	u.app.SetIcon(u.icons[LookRunning])
	u.menu = u.buildMenu()
	if d, ok := u.app.(desktop.App); ok && !opts.NoTray {
		u.tray = d
		d.SetSystemTrayMenu(u.menu)
	}
	u.refresh()
	if opts.NoTray {
		u.ShowContainers()
	}
	return u
}

// Changed is the Controller's change callback: it schedules one refresh however many
// changes arrive before the UI goroutine gets to it.
func (u *UI) Changed() {
	if u.pending.CompareAndSwap(false, true) {
		u.do(u.refresh)
	}
}

// Menu returns the tray menu.
func (u *UI) Menu() *fyne.Menu { return u.menu }

// Icon returns the tray icon shown now.
func (u *UI) Icon() fyne.Resource { return u.icons[u.look] }

func (u *UI) buildMenu() *fyne.Menu {
	actions := map[string]func(){
		ItemStatus:      u.ShowContainers,
		ItemStart:       func() { u.background(u.ctrl.Start) },
		ItemStop:        func() { u.background(u.ctrl.Stop) },
		ItemRestart:     func() { u.background(u.ctrl.Restart) },
		ItemContainers:  u.ShowContainers,
		ItemShell:       u.openShell,
		ItemCopyContext: u.copyContext,
		ItemPreferences: u.ShowPreferences,
		ItemLogs:        u.ShowLogs,
		ItemQuit:        u.quit,
	}
	var items []*fyne.MenuItem
	for _, m := range Menu(u.ctrl.Snapshot()) {
		if m.ID == "" {
			items = append(items, fyne.NewMenuItemSeparator())
			continue
		}
		it := fyne.NewMenuItem(m.Label, actions[m.ID])
		if m.ID == ItemQuit {
			it.IsQuit = true // the tray driver then keeps our action instead of adding its own Quit
		}
		u.items[m.ID] = it
		items = append(items, it)
	}
	return fyne.NewMenu("berth", items...)
}

// refresh brings every widget up to date with the controller's snapshot.
func (u *UI) refresh() {
	u.pending.Store(false)
	s := u.ctrl.Snapshot()
	changed := false
	for _, m := range Menu(s) {
		it := u.items[m.ID]
		if it == nil {
			continue
		}
		if it.Label != m.Label || it.Disabled == m.Enabled {
			it.Label, it.Disabled = m.Label, !m.Enabled
			changed = true
		}
	}
	if changed {
		u.menu.Refresh() // the tray's menu, or the window's menu bar without a tray
	}
	if l := s.Look(); l != u.look {
		u.look = l
		if u.tray != nil {
			u.tray.SetSystemTrayIcon(u.icons[l])
		}
	}
	if u.containers != nil {
		u.containers.update(s)
	}
}

// background runs a controller action off the UI goroutine; its failures reach the user
// as notifications (the controller sends them) and in the snapshot's Error.
func (u *UI) background(fn func(context.Context) error) {
	go fn(u.ctx)
}

// Click runs a menu item's action by its ID (Item*) or its label, as a click would. It
// must run on the UI goroutine.
func (u *UI) Click(name string) error {
	for id, it := range u.items {
		if id == name || it.Label == name {
			if it.Disabled {
				return fmt.Errorf("menu item %q is disabled", it.Label)
			}
			if it.Action != nil {
				it.Action()
			}
			return nil
		}
	}
	return fmt.Errorf("no menu item %q", name)
}

// MenuState lists the menu's items as shown: label and whether enabled.
func (u *UI) MenuState() []MenuItem {
	var out []MenuItem
	for _, m := range Menu(u.ctrl.Snapshot()) {
		if it := u.items[m.ID]; it != nil {
			out = append(out, MenuItem{ID: m.ID, Label: it.Label, Enabled: !it.Disabled})
		}
	}
	return out
}

func (u *UI) openShell() {
	open := u.opts.OpenShell
	if open == nil {
		open = func() error { return OpenShell(u.opts.Berth, u.ctrl.Instance().Name) }
	}
	if err := open(); err != nil {
		u.ctrl.notify("berth: cannot open a shell", err.Error())
	}
}

// ContextCommand is what Copy puts on the clipboard.
func (u *UI) ContextCommand() string {
	return "docker context use " + u.ctrl.Snapshot().Context
}

func (u *UI) copyContext() {
	u.app.Clipboard().SetContent(u.ContextCommand())
}

// StopOnQuit reports the Preferences choice for Quit.
func (u *UI) StopOnQuit() bool {
	return u.app.Preferences().BoolWithFallback(prefStopOnQuit, false)
}

// quit leaves the VM running, or stops it first, as chosen in Preferences.
func (u *UI) quit() {
	if !u.StopOnQuit() || u.ctrl.Instance().DaemonPID() == 0 {
		u.cancel()
		u.app.Quit()
		return
	}
	go func() {
		u.ctrl.Stop(u.ctx)
		u.do(func() {
			u.cancel()
			u.app.Quit()
		})
	}()
}

// Close ends background work.
func (u *UI) Close() { u.cancel() }
