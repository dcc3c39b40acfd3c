package gui

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Column widths of the container list; the last column (actions) takes the rest.
var containerColumns = []float32{170, 210, 220, 180}

// containersWindow lists the containers with their actions.
type containersWindow struct {
	u    *UI
	win  fyne.Window
	icon *canvas.Image

	headline *widget.Label
	detail   *widget.Label
	problems *widget.Label
	start    *widget.Button
	list     *fyne.Container
	empty    *widget.Label
	rows     map[string]*containerRow // by container name, for tests and automation

	shown string // fingerprint of what the rows show, to rebuild only on change
}

// containerRow is one container's widgets.
type containerRow struct {
	c                                  Container
	name, image, state                 *widget.Label
	links                              []*widget.Hyperlink
	start, stop, restart, logs, remove *widget.Button
}

// ShowContainers opens (or raises) the container window.
func (u *UI) ShowContainers() {
	if u.containers == nil {
		u.containers = newContainersWindow(u)
	}
	u.containers.update(u.ctrl.Snapshot())
	// The engine's status texts ("Up 3 minutes") age between events: list once more.
	go u.ctrl.RefreshContainers(u.ctx)
	u.containers.win.Show()
	u.containers.win.RequestFocus()
}

func newContainersWindow(u *UI) *containersWindow {
	w := &containersWindow{u: u, rows: map[string]*containerRow{}}
	w.win = u.app.NewWindow("berth — containers")
	if u.opts.Menu != nil {
		w.win.SetMainMenu(fyne.NewMainMenu(u.opts.Menu)) // no tray: this window is the app
	}
	w.win.SetCloseIntercept(u.closeIntercept(WindowContainers))
	w.icon = canvas.NewImageFromResource(u.icons[LookStopped])
	w.icon.SetMinSize(fyne.NewSize(32, 32))
	w.icon.FillMode = canvas.ImageFillContain
	w.headline = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	w.detail = widget.NewLabel("")
	w.detail.Truncation = fyne.TextTruncateEllipsis
	w.problems = widget.NewLabel("")
	w.problems.Wrapping = fyne.TextWrapWord
	w.problems.Importance = widget.DangerImportance
	w.start = widget.NewButtonWithIcon("Start", theme.MediaPlayIcon(), func() { u.run(ItemStart) })
	w.start.Importance = widget.HighImportance
	w.empty = widget.NewLabel("")
	w.list = container.NewVBox()

	header := container.New(&columnsLayout{widths: containerColumns},
		boldLabel("Name"), boldLabel("Image"), boldLabel("State"), boldLabel("Ports"), boldLabel("Actions"))
	top := container.NewVBox(
		container.NewBorder(nil, nil, w.icon, container.NewCenter(w.start), container.NewVBox(w.headline, w.detail)),
		w.problems,
		widget.NewSeparator(),
		header,
	)
	w.win.SetContent(container.NewBorder(top, nil, nil, nil, container.NewVScroll(container.NewVBox(w.list, w.empty))))
	w.win.Resize(fyne.NewSize(1040, 420))
	return w
}

func boldLabel(s string) *widget.Label {
	return widget.NewLabelWithStyle(s, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
}

func (w *containersWindow) update(s Snapshot) {
	w.icon.Resource = w.u.icons[s.Look()]
	w.icon.Refresh()
	w.headline.SetText(s.Headline())
	w.detail.SetText(statusDetail(s))
	if (Menu(s)[2].Enabled) && !s.Daemon {
		w.start.Show()
	} else {
		w.start.Hide()
	}
	w.problems.SetText(problems(s))
	if w.problems.Text == "" {
		w.problems.Hide()
	} else {
		w.problems.Show()
	}

	switch {
	case !s.Up():
		w.empty.SetText("Containers are listed while the VM runs.")
	case !s.EngineReady && s.EngineError == "":
		w.empty.SetText("Reading the container list…")
	case len(s.Containers) == 0 && s.EngineReady:
		w.empty.SetText("No containers. Run one: docker --context " + s.Context + " run -d -p 8080:80 nginx")
	default:
		w.empty.SetText("")
	}
	containers := s.Containers
	if !s.Up() {
		containers = nil
	}
	if fp := fingerprint(containers); fp != w.shown {
		w.shown = fp
		w.rebuild(containers)
	}
}

// statusDetail is the second header line: resources, engine, socket.
func statusDetail(s Snapshot) string {
	st := s.Status
	parts := []string{}
	if st.CPUs > 0 {
		parts = append(parts, fmt.Sprintf("%d CPUs, %g GiB memory, %d GiB disk", st.CPUs, st.MemoryGiB, st.DiskGiB))
	}
	if s.Up() {
		if g := st.Guest; g != nil && g.EngineVersion != "" {
			parts = append(parts, "Docker Engine "+g.EngineVersion)
		}
		parts = append(parts, "docker context "+s.Context)
	}
	return strings.Join(parts, " · ")
}

// problems lists what the user should know: the error, ports that could not be forwarded,
// an unreachable engine, a nearly full disk.
func problems(s Snapshot) string {
	var p []string
	for _, e := range []string{s.ActionError, s.Error} {
		if e != "" {
			p = append(p, e)
		}
	}
	if s.Up() {
		for _, f := range s.Status.Ports {
			if f.State == "failed" {
				p = append(p, fmt.Sprintf("Port %s/%s not forwarded: %s", net.JoinHostPort(f.HostIP, strconv.Itoa(f.HostPort)), f.Proto, f.Error))
			}
		}
		if s.EngineError != "" {
			p = append(p, "Docker engine: "+s.EngineError)
		}
		if d := diskWarning(s.Status); d != "" {
			p = append(p, "Data disk nearly full: "+d)
		}
	}
	return strings.Join(p, "\n")
}

func fingerprint(cs []Container) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s|%s|%s|%s|%s|", c.ID, c.Name, c.Image, c.State, c.Status)
		for _, p := range c.Ports {
			b.WriteString(p.Label() + ",")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func (w *containersWindow) rebuild(cs []Container) {
	w.rows = map[string]*containerRow{}
	objs := make([]fyne.CanvasObject, 0, len(cs))
	for _, c := range cs {
		r := w.newRow(c)
		w.rows[c.Name] = r
		var ports []fyne.CanvasObject
		for _, l := range r.links {
			ports = append(ports, l)
		}
		if len(ports) == 0 {
			ports = append(ports, widget.NewLabel("—"))
		}
		actions := container.NewHBox(r.start, r.stop, r.restart, r.logs, r.remove)
		objs = append(objs, container.New(&columnsLayout{widths: containerColumns},
			r.name, r.image, r.state, container.NewVBox(ports...), actions))
	}
	w.list.Objects = objs
	w.list.Refresh()
}

func (w *containersWindow) newRow(c Container) *containerRow {
	u := w.u
	r := &containerRow{c: c}
	r.name = widget.NewLabelWithStyle(c.Name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	r.name.Truncation = fyne.TextTruncateEllipsis
	r.image = widget.NewLabel(c.Image)
	r.image.Truncation = fyne.TextTruncateEllipsis
	r.state = widget.NewLabel(c.State + " · " + c.Status)
	r.state.Truncation = fyne.TextTruncateEllipsis
	switch c.State {
	case "running":
		r.state.Importance = widget.SuccessImportance
	case "restarting", "paused":
		r.state.Importance = widget.WarningImportance
	case "dead":
		r.state.Importance = widget.DangerImportance
	}
	for _, p := range c.Ports {
		if url := p.URL(); url != nil {
			r.links = append(r.links, widget.NewHyperlink(p.Label(), url))
		} else {
			r.links = append(r.links, &widget.Hyperlink{Text: p.Label()}) // UDP: no link to follow
		}
	}
	act := func(action string) func() {
		return func() {
			u.containerAction(c.ID, action, func(err error) { dialog.ShowError(err, w.win) })
		}
	}
	r.start = widget.NewButtonWithIcon("", theme.MediaPlayIcon(), act(ActionStart))
	r.stop = widget.NewButtonWithIcon("", theme.MediaStopIcon(), act(ActionStop))
	r.restart = widget.NewButtonWithIcon("", theme.MediaReplayIcon(), act(ActionRestart))
	r.logs = widget.NewButtonWithIcon("", theme.DocumentIcon(), func() { w.showLogs(c) })
	r.remove = widget.NewButtonWithIcon("", theme.DeleteIcon(), func() {
		msg := fmt.Sprintf("Remove %s? Its filesystem is deleted; named volumes are kept.", c.Name)
		if c.Running() {
			msg = fmt.Sprintf("%s is running. Stop and remove it? Its filesystem is deleted; named volumes are kept.", c.Name)
		}
		dialog.ShowConfirm("Remove container", msg, func(ok bool) {
			if ok {
				act(ActionRemove)()
			}
		}, w.win)
	})
	if c.Running() {
		r.start.Disable()
	} else {
		r.stop.Disable()
	}
	return r
}

// showLogs opens a window with the last lines of a container's output.
func (w *containersWindow) showLogs(c Container) {
	u := w.u
	tw := newTextWindow(u, "Logs: "+c.Name, func(ctx context.Context) (string, error) {
		return u.ctrl.ContainerLogs(ctx, c.ID)
	})
	tw.win.Show()
}

// columnsLayout lays objects out in a row of fixed-width columns; the last one takes the
// rest of the width.
type columnsLayout struct{ widths []float32 }

func (l *columnsLayout) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	pad := theme.Padding()
	x := float32(0)
	for i, o := range objs {
		w := size.Width - x
		if i < len(l.widths) {
			w = l.widths[i]
		}
		h := o.MinSize().Height
		o.Move(fyne.NewPos(x, (size.Height-h)/2))
		o.Resize(fyne.NewSize(max(w-pad, 0), h))
		x += w
	}
}

func (l *columnsLayout) MinSize(objs []fyne.CanvasObject) fyne.Size {
	var w, h float32
	for i, o := range objs {
		ms := o.MinSize()
		if i < len(l.widths) {
			w += l.widths[i]
		} else {
			w += ms.Width
		}
		h = max(h, ms.Height)
	}
	return fyne.NewSize(w, h)
}

var _ fyne.Layout = (*columnsLayout)(nil)
