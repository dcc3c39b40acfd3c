package gui

import (
	"context"
	"fmt"
	"sync/atomic"

	"fyne.io/fyne/v2"
)

// Windows berth-tray opens, by the name ShowWindow takes.
const (
	WindowContainers  = "containers"
	WindowPreferences = "preferences"
	WindowLogs        = "logs"
)

// TrayHost shows the tray: the system tray (fyne.io/systray in berth-tray), or nothing
// where the menu lives in a window's menu bar instead.
type TrayHost interface {
	// Update shows the menu (labels and enabled states as they are now), the icon and
	// the tooltip. It is called once at start and after anything changed, on the
	// tray's Do goroutine.
	Update(menu *fyne.Menu, icon fyne.Resource, tooltip string)
}

// TrayOptions configure a Tray.
type TrayOptions struct {
	Controller *Controller
	// Host shows the menu and icon; nil for none.
	Host TrayHost
	// Do runs fn on the goroutine that owns the menu: fyne.Do in a fyne app, the tray's
	// own loop in berth-tray's tray process. Required.
	Do func(fn func())
	// ShowWindow opens or raises a window (Window*).
	ShowWindow func(name string) error
	// Berth is the berth CLI, for Open shell.
	Berth string
	// OpenShell opens a terminal with `berth shell`; OpenShell(Berth, name) when nil.
	OpenShell func() error
	// Copy puts text on the clipboard; CopyText when nil.
	Copy func(text string) error
	// Quit ends the app, after Quit stopped the VM if the settings say so. On Do.
	Quit func()
}

// Tray is the tray menu and icon: a fyne.Menu whose items follow the controller's
// snapshot, and the actions behind them. It draws nothing itself (see TrayHost), so the
// long-lived tray process runs no GUI toolkit loop: windows open in processes of their
// own (WindowProcs) that end when they close.
type Tray struct {
	opts  TrayOptions
	ctrl  *Controller
	menu  *fyne.Menu
	items map[string]*fyne.MenuItem
	look  Look
	tip   string
	icons [5]fyne.Resource

	pending atomic.Bool
	ctx     context.Context
	cancel  context.CancelFunc
}

// NewTray builds the menu and shows it through the host. Call it on the Do goroutine,
// before Controller.Run.
func NewTray(opts TrayOptions) *Tray {
	t := &Tray{opts: opts, ctrl: opts.Controller, items: map[string]*fyne.MenuItem{}, look: -1}
	if t.opts.OpenShell == nil {
		t.opts.OpenShell = func() error { return OpenShell(t.opts.Berth, t.ctrl.Instance().Name) }
	}
	if t.opts.Copy == nil {
		t.opts.Copy = CopyText
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.icons = LookIcons()
	t.menu = t.buildMenu()
	t.refresh(true)
	return t
}

// LookIcons returns the tray icon of each look, as fyne resources.
func LookIcons() [5]fyne.Resource {
	var icons [5]fyne.Resource
	for l := LookStopped; l <= LookError; l++ {
		icons[l] = fyne.NewStaticResource("berth-"+l.String()+".png", IconPNG(l))
	}
	return icons
}

// Changed is the Controller's change callback: it schedules one refresh however many
// changes arrive before the Do goroutine gets to it.
func (t *Tray) Changed() {
	if t.pending.CompareAndSwap(false, true) {
		t.opts.Do(func() { t.refresh(false) })
	}
}

// Menu returns the tray menu.
func (t *Tray) Menu() *fyne.Menu { return t.menu }

// Icon returns the tray icon shown now.
func (t *Tray) Icon() fyne.Resource { return t.icons[t.look] }

func (t *Tray) buildMenu() *fyne.Menu {
	show := func(name string) func() { return func() { t.showWindow(name) } }
	actions := map[string]func(){
		ItemStatus:      show(WindowContainers),
		ItemStart:       func() { t.background(t.ctrl.Start) },
		ItemStop:        func() { t.background(t.ctrl.Stop) },
		ItemRestart:     func() { t.background(t.ctrl.Restart) },
		ItemContainers:  show(WindowContainers),
		ItemShell:       t.openShell,
		ItemCopyContext: t.copyContext,
		ItemPreferences: show(WindowPreferences),
		ItemLogs:        show(WindowLogs),
		ItemQuit:        t.quit,
	}
	var items []*fyne.MenuItem
	for _, m := range Menu(t.ctrl.Snapshot()) {
		if m.ID == "" {
			items = append(items, fyne.NewMenuItemSeparator())
			continue
		}
		it := fyne.NewMenuItem(m.Label, actions[m.ID])
		it.IsQuit = m.ID == ItemQuit // a menu bar then keeps our action instead of adding its own Quit
		t.items[m.ID] = it
		items = append(items, it)
	}
	return fyne.NewMenu("berth", items...)
}

// refresh brings the menu and icon up to date with the controller's snapshot and shows
// them when something changed (or force).
func (t *Tray) refresh(force bool) {
	t.pending.Store(false)
	s := t.ctrl.Snapshot()
	changed := force
	for _, m := range Menu(s) {
		it := t.items[m.ID]
		if it == nil {
			continue
		}
		if it.Label != m.Label || it.Disabled == m.Enabled {
			it.Label, it.Disabled = m.Label, !m.Enabled
			changed = true
		}
	}
	if l, tip := s.Look(), "berth — "+s.Headline(); l != t.look || tip != t.tip {
		t.look, t.tip = l, tip
		changed = true
	}
	if changed && t.opts.Host != nil {
		t.opts.Host.Update(t.menu, t.icons[t.look], t.tip)
	}
}

// background runs a controller action off the Do goroutine; its failures reach the user
// as notifications (the controller sends them) and in the snapshot's Error.
func (t *Tray) background(fn func(context.Context) error) {
	go fn(t.ctx)
}

// Click runs a menu item's action by its ID (Item*) or its label, as a click would. It
// must run on the Do goroutine.
func (t *Tray) Click(name string) error {
	for id, it := range t.items {
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
func (t *Tray) MenuState() []MenuItem {
	var out []MenuItem
	for _, m := range Menu(t.ctrl.Snapshot()) {
		if it := t.items[m.ID]; it != nil {
			out = append(out, MenuItem{ID: m.ID, Label: it.Label, Enabled: !it.Disabled})
		}
	}
	return out
}

func (t *Tray) showWindow(name string) {
	if t.opts.ShowWindow == nil {
		return
	}
	if err := t.opts.ShowWindow(name); err != nil {
		t.ctrl.notify("berth: cannot open the "+name+" window", err.Error())
	}
}

func (t *Tray) openShell() {
	if err := t.opts.OpenShell(); err != nil {
		t.ctrl.notify("berth: cannot open a shell", err.Error())
	}
}

// ContextCommand is what Copy puts on the clipboard.
func (t *Tray) ContextCommand() string {
	return "docker context use " + t.ctrl.Snapshot().Context
}

func (t *Tray) copyContext() {
	if err := t.opts.Copy(t.ContextCommand()); err != nil {
		t.ctrl.notify("berth: cannot copy to the clipboard", err.Error())
	}
}

// quit leaves the VM running, or stops it first, as chosen in Preferences.
func (t *Tray) quit() {
	if !LoadSettings().StopOnQuit || t.ctrl.Instance().DaemonPID() == 0 {
		t.cancel()
		t.opts.Quit()
		return
	}
	go func() {
		t.ctrl.Stop(t.ctx)
		t.opts.Do(func() {
			t.cancel()
			t.opts.Quit()
		})
	}()
}

// Close ends background work.
func (t *Tray) Close() { t.cancel() }
