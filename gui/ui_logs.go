package gui

import (
	"context"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// textWindow shows a text loaded on demand (a log's tail) with a Reload button. It reads
// once per open or click: nothing follows the log in the background.
type textWindow struct {
	u      *UI
	win    fyne.Window
	text   *widget.TextGrid
	status *widget.Label
	bar    fyne.CanvasObject // status and Reload, above the text
	load   func(context.Context) (string, error)
}

func newTextWindow(u *UI, title string, load func(context.Context) (string, error)) *textWindow {
	t := &textWindow{u: u, load: load}
	t.win = u.app.NewWindow(title)
	t.text = widget.NewTextGrid()
	t.text.Scroll = fyne.ScrollBoth
	t.status = widget.NewLabel("")
	reload := widget.NewButtonWithIcon("Reload", theme.ViewRefreshIcon(), t.reload)
	t.bar = container.NewBorder(nil, nil, nil, reload, t.status)
	t.win.SetContent(container.NewBorder(t.bar, nil, nil, nil, t.text))
	t.win.Resize(fyne.NewSize(900, 560))
	t.reload()
	return t
}

func (t *textWindow) reload() {
	t.status.SetText("Loading…")
	go func() {
		s, err := t.load(t.u.ctx)
		t.u.do(func() { t.show(s, err) })
	}()
}

func (t *textWindow) show(s string, err error) {
	if err != nil {
		t.status.SetText(err.Error())
		t.status.Importance = widget.DangerImportance
		t.text.SetText("")
		return
	}
	t.status.Importance = widget.MediumImportance
	n := strings.Count(s, "\n")
	if s == "" {
		t.status.SetText("(empty)")
	} else {
		t.status.SetText(plural(n, "line"))
	}
	t.text.SetText(s)
	t.text.ScrollToBottom()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// logsWindow shows the instance's logs: the host daemon's, the guest's engine and agent
// (read through the control API), and the serial console.
type logsWindow struct {
	*textWindow
	which *widget.Select
	path  *widget.Label
	name  string
}

// ShowLogs opens (or raises) the logs window.
func (u *UI) ShowLogs() {
	if u.logs == nil {
		l := &logsWindow{name: LogDaemon}
		l.textWindow = newTextWindow(u, "berth — logs", func(ctx context.Context) (string, error) {
			return u.ctrl.InstanceLog(ctx, l.name)
		})
		l.win.SetCloseIntercept(u.closeIntercept(WindowLogs))
		l.path = widget.NewLabel(u.ctrl.LogPath(l.name))
		l.path.Truncation = fyne.TextTruncateEllipsis
		l.which = widget.NewSelect(LogNames, nil)
		l.which.Selected = LogDaemon // already loading
		l.which.OnChanged = func(s string) {
			l.name = s
			l.path.SetText(u.ctrl.LogPath(s))
			l.reload()
		}
		l.win.SetContent(container.NewBorder(
			container.NewVBox(container.NewBorder(nil, nil, widget.NewLabel("Log:"), nil, container.NewHBox(l.which, l.path)), l.bar),
			nil, nil, nil, l.text))
		u.logs = l
	} else {
		u.logs.reload()
	}
	u.logs.win.Show()
	u.logs.win.RequestFocus()
}
