package gui

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
	"github.com/berth-dev/berth/fileshare"
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

	shares            []fileshare.Share // as edited; saved with the rest
	shareList         *fyne.Container   // one shareRow each
	shareRows         []*shareRow
	sharePath         *widget.Entry
	addShare, pickDir *widget.Button
}

// shareRow is one share in the File sharing list.
type shareRow struct {
	path             *widget.Label
	readOnly, notify *widget.Check
	remove           *widget.Button
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

func newPrefsWindow(u *UI) *prefsWindow {
	p := &prefsWindow{u: u}
	p.win = u.app.NewWindow("berth — preferences")
	p.win.SetCloseIntercept(u.closeIntercept(WindowPreferences))
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
	p.cancel = widget.NewButton("Close", u.closeIntercept(WindowPreferences))
	p.restart = widget.NewButton("Restart now", func() {
		p.restartBox.Hide()
		p.message.SetText("Restarting…")
		u.run(ItemRestart)
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

// sharesSection is the file-sharing settings: the shares, one row each, and a folder to
// add, typed or picked.
func (p *prefsWindow) sharesSection() []fyne.CanvasObject {
	p.shareList = container.NewVBox()
	p.sharePath = widget.NewEntry()
	p.sharePath.SetPlaceHolder("Folder to share, e.g. /home/me/src")
	p.sharePath.OnSubmitted = func(string) { p.addTypedShare() }
	p.addShare = widget.NewButton("Add", p.addTypedShare)
	p.pickDir = widget.NewButtonWithIcon("Choose…", theme.FolderOpenIcon(), p.pickShare)
	hint := widget.NewLabel("Each folder is mounted in the VM at the same path.")
	hint.Importance = widget.LowImportance
	return []fyne.CanvasObject{
		widget.NewSeparator(),
		widget.NewLabelWithStyle("File sharing (applies on restart)", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		hint,
		p.shareList,
		container.NewBorder(nil, nil, nil, container.NewHBox(p.addShare, p.pickDir), p.sharePath),
	}
}

// setShares shows a new list of shares.
func (p *prefsWindow) setShares(shares []fileshare.Share) {
	p.shares = shares
	p.shareRows = nil
	var rows []fyne.CanvasObject
	for i, s := range p.shares {
		r := &shareRow{path: widget.NewLabel(s.Path)}
		r.path.Truncation = fyne.TextTruncateEllipsis
		r.readOnly = widget.NewCheck("read-only", nil)
		r.readOnly.SetChecked(s.ReadOnly)
		r.notify = widget.NewCheck("notify changes", nil)
		// Read-only shares are never notified (the guest cannot set their mtimes): the
		// check shows that, and keeps noNotify for when the share is writable again.
		showNotify := func() {
			s := p.shares[i]
			r.notify.Checked = !s.NoNotify && !s.ReadOnly
			if s.ReadOnly {
				r.notify.Disable()
			} else {
				r.notify.Enable()
			}
			r.notify.Refresh()
		}
		showNotify()
		r.readOnly.OnChanged = func(on bool) { p.shares[i].ReadOnly = on; showNotify() }
		r.notify.OnChanged = func(on bool) { p.shares[i].NoNotify = !on }
		r.remove = widget.NewButtonWithIcon("", theme.DeleteIcon(), func() {
			p.setShares(slices.Delete(p.shares, i, i+1))
		})
		p.shareRows = append(p.shareRows, r)
		rows = append(rows, container.NewBorder(nil, nil, nil, container.NewHBox(r.readOnly, r.notify, r.remove), r.path))
	}
	if len(rows) == 0 {
		rows = append(rows, widget.NewLabel("No folder is shared."))
	}
	p.shareList.Objects = rows
	p.shareList.Refresh()
}

// addTypedShare adds the folder in the entry, writable and notified. Save checks it.
func (p *prefsWindow) addTypedShare() {
	path := strings.TrimSpace(p.sharePath.Text)
	if path == "" {
		return
	}
	p.setShares(append(p.shares, fileshare.Share{Path: filepath.Clean(path)}))
	p.sharePath.SetText("")
}

// pickShare adds a folder chosen in a folder dialog.
func (p *prefsWindow) pickShare() {
	dialog.NewFolderOpen(func(dir fyne.ListableURI, err error) {
		switch {
		case err != nil:
			p.showError(err)
		case dir != nil: // nil: cancelled
			p.setShares(append(p.shares, fileshare.Share{Path: filepath.Clean(dir.Path())}))
		}
	}, p.win).Show()
}

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
	p.setShares(slices.Clone(f.Shares))
	p.sharePath.SetText("")
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
		Shares:          slices.Clone(p.shares),
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
	if err := SaveSettings(Settings{StopOnQuit: f.StopOnQuit}); err != nil {
		p.showError(err)
		return
	}
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
