package gui

import (
	"fmt"
	"strconv"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"
)

// Quit choices in Preferences.
const (
	quitLeaveRunning = "Leave the VM running"
	quitStopVM       = "Stop the VM"
)

// prefsWindow edits a PrefsForm. Saving validates (PrefsForm.Apply), writes berth.yaml
// and, when the VM runs and a setting changed that only a restart applies, offers the
// restart in the window.
type prefsWindow struct {
	u   *UI
	win fyne.Window

	cpus, memory, disk *widget.Entry
	bind               *widget.RadioGroup
	quit               *widget.RadioGroup
	login              *widget.Check
	vm                 *widget.Form
	message            *widget.Label
	save, cancel       *widget.Button
	restartBox         *fyne.Container
	restart, later     *widget.Button
}

// ShowPreferences opens the Preferences window, filled from the current settings.
func (u *UI) ShowPreferences() {
	if u.prefs == nil {
		u.prefs = newPrefsWindow(u)
	}
	u.prefs.load()
	u.prefs.win.Show()
	u.prefs.win.RequestFocus()
}

// PreferencesWindow returns the Preferences window, or nil before it was first shown.
func (u *UI) PreferencesWindow() fyne.Window {
	if u.prefs == nil {
		return nil
	}
	return u.prefs.win
}

func newPrefsWindow(u *UI) *prefsWindow {
	p := &prefsWindow{u: u}
	p.win = u.app.NewWindow("berth — preferences")
	p.win.SetCloseIntercept(p.win.Hide)
	p.cpus, p.memory, p.disk = widget.NewEntry(), widget.NewEntry(), widget.NewEntry()
	p.bind = widget.NewRadioGroup(BindAddresses, nil)
	p.bind.Horizontal = true
	p.bind.Required = true
	p.quit = widget.NewRadioGroup([]string{quitLeaveRunning, quitStopVM}, nil)
	p.quit.Required = true
	p.login = widget.NewCheck("Start berth-tray when I log in", nil)
	p.message = widget.NewLabel("")
	p.message.Wrapping = fyne.TextWrapWord
	p.save = widget.NewButton("Save", p.doSave)
	p.save.Importance = widget.HighImportance
	p.cancel = widget.NewButton("Close", p.win.Hide)
	p.restart = widget.NewButton("Restart now", func() {
		p.restartBox.Hide()
		p.message.SetText("Restarting…")
		u.background(u.ctrl.Restart)
	})
	p.restart.Importance = widget.HighImportance
	p.later = widget.NewButton("Later", func() {
		p.restartBox.Hide()
		p.message.SetText("Saved: the new settings apply at the next start.")
	})
	p.restartBox = container.NewHBox(widget.NewLabel("Restart the VM now to apply them?"), p.restart, p.later)
	p.restartBox.Hide()

	p.vm = widget.NewForm(
		widget.NewFormItem("CPUs", p.cpus),
		widget.NewFormItem("Memory (GiB)", p.memory),
		widget.NewFormItem("Disk (GiB)", p.disk),
		&widget.FormItem{Text: "Publish ports on", Widget: p.bind,
			HintText: "127.0.0.1: this computer only. 0.0.0.0: reachable from your network."},
	)
	if u.opts.Autostart == nil {
		p.login.Hide()
	}
	tray := widget.NewForm(
		widget.NewFormItem("When quitting", p.quit),
		widget.NewFormItem("", p.login),
	)
	sections := []fyne.CanvasObject{
		widget.NewLabelWithStyle("Virtual machine (applies on restart)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		p.vm,
	}
	// File sharing: the shares section (fileshare.Share list in berth.yaml) goes here, as
	// more sections; PrefsForm gains the fields and Apply copies them into the config.
	sections = append(sections, p.sharesSection()...)
	sections = append(sections,
		widget.NewSeparator(),
		widget.NewLabelWithStyle("Tray", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		tray,
		widget.NewSeparator(),
		p.message, p.restartBox,
		container.NewHBox(p.save, p.cancel),
	)
	p.win.SetContent(container.NewPadded(container.NewVBox(sections...)))
	p.win.Resize(fyne.NewSize(560, 0))
	return p
}

// sharesSection is the place for the file-sharing settings; none yet.
func (p *prefsWindow) sharesSection() []fyne.CanvasObject { return nil }

// load fills the widgets from the config and the tray's settings.
func (p *prefsWindow) load() {
	p.restartBox.Hide()
	cfg, err := p.u.ctrl.Config()
	if err != nil {
		p.setForm(PrefsForm{})
		p.showError(fmt.Errorf("%v — fix the file, then reopen Preferences", err))
		p.save.Disable()
		return
	}
	p.save.Enable()
	login := p.u.opts.Autostart != nil && p.u.opts.Autostart.Enabled()
	p.setForm(NewPrefsForm(cfg, p.u.StopOnQuit(), login))
	p.setDiskHint(cfg.Disk)
	p.message.SetText("")
}

// setDiskHint says how far the disk can shrink: not at all.
func (p *prefsWindow) setDiskHint(gib int) {
	p.vm.Items[2].HintText = "The data disk can grow, never shrink: " + strconv.Itoa(gib) + " GiB or more."
	p.vm.Refresh()
}

func (p *prefsWindow) setForm(f PrefsForm) {
	p.cpus.SetText(f.CPUs)
	p.memory.SetText(f.Memory)
	p.disk.SetText(f.Disk)
	p.bind.SetSelected(f.PortBindAddress)
	if f.StopOnQuit {
		p.quit.SetSelected(quitStopVM)
	} else {
		p.quit.SetSelected(quitLeaveRunning)
	}
	p.login.SetChecked(f.StartAtLogin)
}

// Form returns what the widgets hold.
func (p *prefsWindow) form() PrefsForm {
	return PrefsForm{
		CPUs:            p.cpus.Text,
		Memory:          p.memory.Text,
		Disk:            p.disk.Text,
		PortBindAddress: p.bind.Selected,
		StopOnQuit:      p.quit.Selected == quitStopVM,
		StartAtLogin:    p.login.Checked,
	}
}

func (p *prefsWindow) doSave() {
	f := p.form()
	restart, err := p.u.ctrl.SavePrefs(f)
	if err != nil {
		p.showError(err)
		return
	}
	p.u.app.Preferences().SetBool(prefStopOnQuit, f.StopOnQuit)
	if a := p.u.opts.Autostart; a != nil && a.Enabled() != f.StartAtLogin {
		if err := a.Set(f.StartAtLogin); err != nil {
			p.showError(err)
			return
		}
	}
	p.message.Importance = widget.MediumImportance
	if cur, err := p.u.ctrl.Config(); err == nil {
		p.setDiskHint(cur.Disk)
	}
	if restart {
		p.message.SetText("Saved. The VM runs with the old settings until it restarts.")
		p.restartBox.Show()
		return
	}
	p.message.SetText("Saved.")
}

func (p *prefsWindow) showError(err error) {
	p.message.Importance = widget.DangerImportance
	p.message.SetText(err.Error())
}
