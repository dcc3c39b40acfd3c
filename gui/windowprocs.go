package gui

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Why windows live in processes of their own: fyne's desktop driver redraws on a fixed
// 60 Hz tick for as long as the app runs, window or not (fyne-io/fyne#2506), which costs
// about 1.5 % of a core doing nothing. The tray process therefore runs no fyne loop at
// all — its menu is the platform's own (fyne.io/systray) — and each window is
// `berth-tray --window NAME`, a fyne app that ends when the window closes.
//
// The tray and a window process talk over the window's stdin and stdout, one JSON
// object (windowMsg) a line:
//
//	tray → window  {"op":"show"}                   raise the window
//	               {"op":"screenshot","path":P}   write the window to P as PNG (automation)
//	window → tray  {"op":"reply","source":S,"error":E}   the answer to a screenshot
//	               {"op":"click","item":ID}       run a tray menu item (Start, Restart)
//
// The window process ends when the tray closes its stdin: Quit closes every window.

type windowMsg struct {
	Op     string `json:"op"`
	Path   string `json:"path,omitempty"`
	Item   string `json:"item,omitempty"`
	Source string `json:"source,omitempty"`
	Error  string `json:"error,omitempty"`
}

// WindowProcs opens windows in processes of their own, one per window; Show on an open
// one raises it.
type WindowProcs struct {
	// Command returns the command line of a window process (exe and arguments).
	Command func(name string) []string
	// Click runs a tray menu item a window asked for.
	Click func(item string)
	Log   *slog.Logger

	mu     sync.Mutex
	procs  map[string]*windowProc
	closed bool
}

type windowProc struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	sendMu  sync.Mutex // one request at a time
	replies chan windowMsg
	done    chan struct{}
}

// Show opens the window, or raises it when its process runs.
func (w *WindowProcs) Show(name string) error {
	p, started, err := w.proc(name)
	if err != nil || started {
		return err // a new window process shows its window itself
	}
	return p.send(windowMsg{Op: "show"})
}

// Screenshot shows the window and has its process write it to path as PNG.
func (w *WindowProcs) Screenshot(name, path string) (string, error) {
	p, _, err := w.proc(name)
	if err != nil {
		return "", err
	}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if err := p.write(windowMsg{Op: "screenshot", Path: path}); err != nil {
		return "", err
	}
	select {
	case r := <-p.replies:
		if r.Error != "" {
			return "", errors.New(r.Error)
		}
		return r.Source, nil
	case <-p.done:
		return "", fmt.Errorf("the %s window closed", name)
	case <-time.After(time.Minute):
		return "", fmt.Errorf("the %s window did not answer", name)
	}
}

// Close closes every window: their processes end when their stdin does; one still
// running after timeout is killed.
func (w *WindowProcs) Close(timeout time.Duration) {
	w.mu.Lock()
	w.closed = true
	procs := w.procs
	w.procs = nil
	w.mu.Unlock()
	for _, p := range procs {
		p.stdin.Close()
	}
	deadline := time.After(timeout)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// proc returns the window's process, starting it if none runs.
func (w *WindowProcs) proc(name string) (p *windowProc, started bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, false, errors.New("quitting")
	}
	if p := w.procs[name]; p != nil {
		return p, false, nil
	}
	argv := w.Command(name)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr // the window's log goes where the tray's goes
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, false, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("cannot open the %s window: %w", name, err)
	}
	p = &windowProc{name: name, cmd: cmd, stdin: stdin, replies: make(chan windowMsg, 1), done: make(chan struct{})}
	if w.procs == nil {
		w.procs = map[string]*windowProc{}
	}
	w.procs[name] = p
	w.logger().Debug("window opened", "window", name, "pid", cmd.Process.Pid)
	go w.read(p, stdout)
	return p, true, nil
}

// read handles a window process's messages until it exits.
func (w *WindowProcs) read(p *windowProc, stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		var m windowMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			w.logger().Warn("window process wrote something else than a message", "window", p.name, "line", sc.Text())
			continue
		}
		switch m.Op {
		case "reply":
			select {
			case p.replies <- m:
			default: // nobody asked
			}
		case "click":
			if w.Click != nil {
				w.Click(m.Item)
			}
		}
	}
	err := p.cmd.Wait()
	w.logger().Debug("window closed", "window", p.name, "err", err)
	w.mu.Lock()
	if w.procs[p.name] == p {
		delete(w.procs, p.name)
	}
	w.mu.Unlock()
	close(p.done)
}

func (w *WindowProcs) logger() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

func (p *windowProc) send(m windowMsg) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	return p.write(m)
}

func (p *windowProc) write(m windowMsg) error {
	b, _ := json.Marshal(m)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("the %s window: %w", p.name, err)
	}
	return nil
}

// WindowChannel is a window process's end of the channel to the tray (see WindowProcs).
type WindowChannel struct {
	mu  sync.Mutex
	out io.Writer
}

// WindowRequests are what a window process does for the tray's requests.
type WindowRequests struct {
	Show       func()                                       // raise the window
	Screenshot func(path string) (source string, err error) // write it as PNG
	Closed     func()                                       // the tray closed the channel: quit
}

// ServeWindowChannel reads the tray's requests from in (the window process's stdin) and
// writes answers to out (its stdout, which nothing else may write to) until in ends.
func ServeWindowChannel(in io.Reader, out io.Writer, h WindowRequests) *WindowChannel {
	c := &WindowChannel{out: out}
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			var m windowMsg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			switch m.Op {
			case "show":
				h.Show()
			case "screenshot":
				source, err := h.Screenshot(m.Path)
				r := windowMsg{Op: "reply", Source: source}
				if err != nil {
					r.Error = err.Error()
				}
				c.write(r)
			}
		}
		h.Closed()
	}()
	return c
}

// Click asks the tray to run a menu item (UIOptions.Run).
func (c *WindowChannel) Click(item string) { c.write(windowMsg{Op: "click", Item: item}) }

func (c *WindowChannel) write(m windowMsg) {
	b, _ := json.Marshal(m)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(append(b, '\n'))
}
