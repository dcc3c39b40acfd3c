package gui

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"fyne.io/fyne/v2"
)

// Autostarter switches start-at-login; Autostart implements it.
type Autostarter interface {
	Enabled() bool
	Set(on bool) error
}

// UIOptions configure the windows.
type UIOptions struct {
	App        fyne.App
	Controller *Controller
	// Autostart is the login entry; nil hides the option.
	Autostart Autostarter
	// Do runs fn on the UI goroutine: fyne.Do when nil. Tests queue instead.
	Do func(fn func())
	// Menu, when set, is the container window's menu bar: the desktop has no tray (no
	// D-Bus session on Linux), so that window is the app.
	Menu *fyne.Menu
	// Run runs a tray menu item (ItemStart, ItemRestart) for the windows' own buttons:
	// in the tray process when the windows live in a process of their own, so the tray
	// follows it. Nil runs the controller's action here.
	Run func(item string)
	// OnClose runs when the user closes one of the windows (Window*): nil hides it.
	OnClose func(name string)
}

// UI is the windows — containers, Preferences, logs —: thin views over a Controller's
// Snapshot. The tray menu is a Tray.
type UI struct {
	opts  UIOptions
	app   fyne.App
	ctrl  *Controller
	do    func(func())
	icons [5]fyne.Resource

	containers *containersWindow
	prefs      *prefsWindow
	logs       *logsWindow

	pending atomic.Bool
	actions sync.WaitGroup // container actions under way
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewUI prepares the windows; none shows until asked (Show). Call it on the UI goroutine.
func NewUI(opts UIOptions) *UI {
	u := &UI{opts: opts, app: opts.App, ctrl: opts.Controller, do: opts.Do}
	if u.do == nil {
		u.do = fyne.Do
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.icons = LookIcons()
	u.app.SetIcon(u.icons[LookRunning])
	return u
}

// Changed is the Controller's change callback: it schedules one refresh however many
// changes arrive before the UI goroutine gets to it.
func (u *UI) Changed() {
	if u.pending.CompareAndSwap(false, true) {
		u.do(u.refresh)
	}
}

// refresh brings the open windows up to date with the controller's snapshot.
func (u *UI) refresh() {
	u.pending.Store(false)
	if u.containers != nil {
		u.containers.update(u.ctrl.Snapshot())
	}
}

// Show opens (or raises) a window by name (Window*).
func (u *UI) Show(name string) error {
	switch name {
	case WindowContainers:
		u.ShowContainers()
	case WindowPreferences:
		u.ShowPreferences()
	case WindowLogs:
		u.ShowLogs()
	default:
		return fmt.Errorf("no window %q (%s, %s, %s)", name, WindowContainers, WindowPreferences, WindowLogs)
	}
	return nil
}

// Window returns a window by name, or nil before it was first shown.
func (u *UI) Window(name string) fyne.Window {
	switch {
	case name == WindowContainers && u.containers != nil:
		return u.containers.win
	case name == WindowPreferences && u.prefs != nil:
		return u.prefs.win
	case name == WindowLogs && u.logs != nil:
		return u.logs.win
	}
	return nil
}

// closeIntercept is what closing the named window does.
func (u *UI) closeIntercept(name string) func() {
	return func() {
		if u.opts.OnClose != nil {
			u.opts.OnClose(name)
		} else if w := u.Window(name); w != nil {
			w.Hide()
		}
	}
}

// run runs a tray menu item for a window's button (see UIOptions.Run).
func (u *UI) run(item string) {
	if u.opts.Run != nil {
		u.opts.Run(item)
		return
	}
	switch item {
	case ItemStart:
		u.background(u.ctrl.Start)
	case ItemRestart:
		u.background(u.ctrl.Restart)
	}
}

// background runs a controller action off the UI goroutine; its failures reach the user
// as notifications (the controller sends them) and in the snapshot's Error.
func (u *UI) background(fn func(context.Context) error) {
	go fn(u.ctx)
}

// containerAction runs a container's action off the UI goroutine; Wait waits for it.
func (u *UI) containerAction(id, action string, failed func(error)) {
	u.actions.Add(1)
	go func() {
		defer u.actions.Done()
		if err := u.ctrl.ContainerAction(u.ctx, id, action); err != nil {
			u.do(func() { failed(err) })
		}
	}()
}

// Wait waits for the container actions under way (a window process ends after them).
func (u *UI) Wait() { u.actions.Wait() }

// StopOnQuit reports the Preferences choice for Quit.
func (u *UI) StopOnQuit() bool { return LoadSettings().StopOnQuit }

// Close ends background work.
func (u *UI) Close() { u.cancel() }

// SetMenu makes m the container window's menu bar (UIOptions.Menu); call it before the
// window first shows.
func (u *UI) SetMenu(m *fyne.Menu) { u.opts.Menu = m }
