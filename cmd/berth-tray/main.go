//go:build cgo

// Command berth-tray is berth's menu-bar / system-tray app: it shows an instance's state,
// starts and stops it, and lists its containers. It is a client of the instance's control
// API and Docker socket only. See docs/tray.md.
//
// It runs as several processes. The tray process shows the icon and menu through the
// platform's own tray (fyne.io/systray) and runs no GUI toolkit loop, so it sleeps while
// nothing happens. Each window — containers, Preferences, logs — is `berth-tray --window
// NAME`, a fyne app started when the window opens and ended when it closes (fyne redraws
// on a fixed 60 Hz tick for as long as it runs). Without a tray (no D-Bus session on
// Linux) one fyne process shows the container window with the menu as its menu bar.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"fyne.io/systray"
	"github.com/berth-dev/berth/gui"
	"github.com/berth-dev/berth/host/store"
)

type options struct {
	name       string // instance
	berth      string // the berth CLI
	berthFlag  string // --berth as given, for the login entry and window processes
	automation string
	verbose    bool
	log        *slog.Logger
}

func main() {
	var o options
	flag.StringVar(&o.name, "instance", store.DefaultName, "the instance to show")
	flag.StringVar(&o.berthFlag, "berth", "", "the berth CLI (default: next to berth-tray, else on PATH)")
	flag.StringVar(&o.automation, "automation", "", "serve the test automation hook on this unix socket (docs/tray.md)")
	flag.BoolVar(&o.verbose, "v", false, "log debug messages")
	window := flag.String("window", "", "show one window (containers, preferences, logs) in this process; the tray starts these itself")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "berth-tray: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	o.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "tray")
	o.berth = gui.FindBerth(o.berthFlag)
	var err error
	switch {
	case *window != "":
		o.log = o.log.With("window", *window)
		err = runWindow(o, *window)
	case !trayAvailable():
		o.log.Warn("no D-Bus session bus, so no system tray: the container window carries the menu, and closing it quits")
		err = runNoTray(o)
	default:
		err = runTray(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth-tray:", err)
		os.Exit(1)
	}
}

// runTray is the tray process: icon and menu through fyne.io/systray, windows in
// processes of their own.
func runTray(o options) error {
	// A fyne app that never runs: its SendNotification needs no loop (D-Bus on Linux,
	// UNUserNotificationCenter or osascript on macOS, a PowerShell toast on Windows).
	notifier := app.NewWithID(gui.AppID)
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	loop := newLoop()
	var tray *gui.Tray
	ctrl, err := gui.NewController(gui.Options{
		Instance: o.name,
		Start:    gui.BerthStarter(o.berth, nil),
		Notify:   func(title, body string) { notifier.SendNotification(fyne.NewNotification(title, body)) },
		Changed:  func() { tray.Changed() }, // set before Run starts the callbacks
		Log:      o.log,
	})
	if err != nil {
		return err
	}
	procs := &gui.WindowProcs{
		Command: func(window string) []string { return append([]string{exe, "--window", window}, o.windowArgs()...) },
		Click:   func(item string) { loop.Do(func() { tray.Click(item) }) },
		Log:     o.log,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals // quit as Quit does, leaving the VM running
		procs.Close(5 * time.Second)
		systray.Quit()
	}()
	systray.Run(func() {
		loop.DoAndWait(func() {
			tray = gui.NewTray(gui.TrayOptions{
				Controller: ctrl,
				Host:       &systrayHost{do: loop.Do},
				Do:         loop.Do,
				ShowWindow: procs.Show,
				Berth:      o.berth,
				Quit: func() {
					procs.Close(5 * time.Second)
					systray.Quit()
				},
			})
		})
		go ctrl.Run(ctx)
		if o.automation != "" {
			o.serveAutomation(ctx, tray, loop.DoAndWait, procs.Screenshot)
		}
	}, cancel)
	tray.Close()
	procs.Close(5 * time.Second) // also when the tray ended another way (a signal)
	return nil
}

// runWindow is a window process (--window): one fyne window, driven by the tray over
// stdin and stdout, ending when the window closes or the tray closes stdin.
func runWindow(o options, window string) error {
	ctl, err := takeStdout()
	if err != nil {
		return err
	}
	a := app.NewWithID(gui.AppID)
	var ui *gui.UI
	// No notifications from here: the tray process tells about the instance, and a
	// window shows its own errors. Start and Restart run in the tray process (Run).
	ctrl, err := gui.NewController(gui.Options{
		Instance: o.name,
		Changed:  func() { ui.Changed() },
		Log:      o.log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quit := func() { fyne.Do(a.Quit) }
	var ch *gui.WindowChannel
	ui = gui.NewUI(gui.UIOptions{
		App:        a,
		Controller: ctrl,
		Autostart:  o.autostart(),
		Run:        func(item string) { ch.Click(item) },
		OnClose: func(name string) {
			if w := ui.Window(name); w != nil {
				w.Hide()
			}
			if name == window {
				go func() { ui.Wait(); quit() }() // after the container actions under way
			}
		},
	})
	ch = gui.ServeWindowChannel(os.Stdin, ctl, gui.WindowRequests{
		Show: func() { fyne.Do(func() { ui.Show(window) }) },
		Screenshot: func(path string) (string, error) {
			return gui.Screenshot(ui, window, path, fyne.DoAndWait, windowCapture)
		},
		Closed: quit,
	})
	a.Lifecycle().SetOnStarted(func() { // on the UI goroutine
		go ctrl.Run(ctx)
		if err := ui.Show(window); err != nil {
			o.log.Error("no such window", "err", err)
			a.Quit()
		}
	})
	a.Run()
	ui.Close()
	return nil
}

// runNoTray is berth-tray where the desktop has no tray: one fyne process, the
// container window with the menu as its menu bar; closing it quits.
func runNoTray(o options) error {
	a := app.NewWithID(gui.AppID)
	var ui *gui.UI
	var tray *gui.Tray
	ctrl, err := gui.NewController(gui.Options{
		Instance: o.name,
		Start:    gui.BerthStarter(o.berth, nil),
		Notify: func(title, body string) {
			fyne.Do(func() { a.SendNotification(fyne.NewNotification(title, body)) })
		},
		Changed: func() { ui.Changed(); tray.Changed() }, // set before Run starts the callbacks
		Log:     o.log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.Lifecycle().SetOnStarted(func() { // on the UI goroutine
		ui = gui.NewUI(gui.UIOptions{App: a, Controller: ctrl, Autostart: o.autostart(),
			Run: func(item string) { tray.Click(item) },
			OnClose: func(name string) {
				if name == gui.WindowContainers {
					tray.Click(gui.ItemQuit)
				} else if w := ui.Window(name); w != nil {
					w.Hide()
				}
			}})
		tray = gui.NewTray(gui.TrayOptions{
			Controller: ctrl,
			Host:       menuBarHost{},
			Do:         fyne.Do,
			ShowWindow: ui.Show,
			Berth:      o.berth,
			Copy:       func(s string) error { a.Clipboard().SetContent(s); return nil },
			Quit:       a.Quit,
		})
		ui.SetMenu(tray.Menu())
		ui.Show(gui.WindowContainers)
		go ctrl.Run(ctx)
		if o.automation != "" {
			o.serveAutomation(ctx, tray, fyne.DoAndWait, func(window, path string) (string, error) {
				return gui.Screenshot(ui, window, path, fyne.DoAndWait, windowCapture)
			})
		}
	})
	a.Run()
	if ui != nil {
		ui.Close()
		tray.Close()
	}
	return nil
}

// menuBarHost shows the tray menu as a window's menu bar (runNoTray).
type menuBarHost struct{}

func (menuBarHost) Update(m *fyne.Menu, _ fyne.Resource, _ string) { m.Refresh() }

func (o options) serveAutomation(ctx context.Context, tray *gui.Tray, doWait func(func()), shoot gui.ScreenshotFunc) {
	if err := gui.ServeAutomation(ctx, o.automation, tray, doWait, shoot); err != nil {
		o.log.Error("automation hook", "err", err)
		return
	}
	o.log.Info("automation hook listening", "socket", o.automation)
}

// windowArgs are the flags a window process gets from the tray.
func (o options) windowArgs() []string {
	args := []string{"--instance", o.name}
	if o.berthFlag != "" {
		args = append(args, "--berth", o.berthFlag)
	}
	if o.verbose {
		args = append(args, "-v")
	}
	return args
}

// autostart is the tray's login entry, nil where there is none.
func (o options) autostart() gui.Autostarter {
	args := []string{"--instance", o.name}
	if o.berthFlag != "" {
		args = append(args, "--berth", o.berthFlag)
	}
	as, err := gui.CurrentAutostart(runtime.GOOS, args, o.name)
	if err != nil {
		o.log.Warn("start at login unavailable", "err", err)
		return nil
	}
	return as
}

// trayAvailable reports whether a tray icon can show: always on macOS and Windows; on
// Linux and the BSDs the tray is a D-Bus StatusNotifierItem, so a session bus is needed
// (without one the systray library also crashes on quit).
func trayAvailable() bool {
	switch runtime.GOOS {
	case "darwin", "windows":
		return true
	}
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" {
		return true
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "bus")); err == nil {
			return true
		}
	}
	_, err := exec.LookPath("dbus-launch") // what the D-Bus library autolaunches
	return err == nil
}
