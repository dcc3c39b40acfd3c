//go:build cgo

package main

import (
	"bytes"
	"image"
	_ "image/png"
	"runtime"

	"fyne.io/fyne/v2"
	"fyne.io/systray"
	"github.com/fyne-io/image/ico"
)

// systrayHost shows the tray menu through fyne.io/systray: a D-Bus StatusNotifierItem
// with a dbusmenu on Linux, an NSStatusItem on macOS, a notification-area icon on
// Windows. Each of these runs on the platform's own event loop, which sleeps until the
// user or the tray does something.
type systrayHost struct {
	do    func(func()) // the tray's loop, where clicks run
	items map[*fyne.MenuItem]*systray.MenuItem
	shown map[*fyne.MenuItem]shownItem
	icon  fyne.Resource
	tip   string
}

type shownItem struct {
	label    string
	disabled bool
}

// Update implements gui.TrayHost. The menu's structure is fixed; its first Update
// builds it, later ones change labels, enabled states, icon and tooltip.
func (h *systrayHost) Update(m *fyne.Menu, icon fyne.Resource, tip string) {
	if h.items == nil {
		h.build(m)
	}
	for it, mi := range h.items {
		now := shownItem{it.Label, it.Disabled}
		if was := h.shown[it]; was == now {
			continue
		} else if was.label != now.label {
			mi.SetTitle(now.label)
		}
		if now.disabled {
			mi.Disable()
		} else {
			mi.Enable()
		}
		h.shown[it] = now
	}
	if icon != h.icon {
		h.icon = icon
		if b, err := osIcon(icon.Content()); err == nil {
			systray.SetIcon(b)
		} else {
			fyne.LogError("tray icon", err)
		}
	}
	if tip != h.tip {
		h.tip = tip
		systray.SetTooltip(tip)
	}
}

func (h *systrayHost) build(m *fyne.Menu) {
	h.items = map[*fyne.MenuItem]*systray.MenuItem{}
	h.shown = map[*fyne.MenuItem]shownItem{}
	switch runtime.GOOS {
	case "darwin", "windows": // a title there is text beside the icon
	default:
		systray.SetTitle("berth") // some XDG tray hosts misbehave without one (fyne#3678)
	}
	for _, it := range m.Items {
		if it.IsSeparator {
			systray.AddSeparator()
			continue
		}
		mi := systray.AddMenuItem(it.Label, "")
		if it.Disabled {
			mi.Disable()
		}
		h.items[it] = mi
		h.shown[it] = shownItem{it.Label, it.Disabled}
		go func() {
			for range mi.ClickedCh {
				h.do(func() {
					if !it.Disabled && it.Action != nil {
						it.Action()
					}
				})
			}
		}()
	}
}

// osIcon converts a PNG to what the platform's tray takes: PNG, except an ICO on
// Windows.
func osIcon(png []byte) ([]byte, error) {
	if runtime.GOOS != "windows" {
		return png, nil
	}
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := ico.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// loop runs functions one at a time on a goroutine of its own: the tray process's UI
// goroutine (it has no toolkit loop to borrow).
type loop chan func()

func newLoop() loop {
	l := make(loop, 16)
	go func() {
		for fn := range l {
			fn()
		}
	}()
	return l
}

// Do queues fn.
func (l loop) Do(fn func()) { l <- fn }

// DoAndWait runs fn on the loop and waits for it; never call it from the loop.
func (l loop) DoAndWait(fn func()) {
	done := make(chan struct{})
	l <- func() { fn(); close(done) }
	<-done
}
