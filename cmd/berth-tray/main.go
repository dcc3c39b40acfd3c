//go:build cgo

// Command berth-tray is berth's menu-bar / system-tray app: it shows an instance's state,
// starts and stops it, and lists its containers. It is a client of the instance's control
// API and Docker socket only. See docs/tray.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"github.com/berth-dev/berth/gui"
	"github.com/berth-dev/berth/host/store"
)

func main() {
	name := flag.String("instance", store.DefaultName, "the instance to show")
	berth := flag.String("berth", "", "the berth CLI (default: next to berth-tray, else on PATH)")
	automation := flag.String("automation", "", "serve the test automation hook on this unix socket (docs/tray.md)")
	verbose := flag.Bool("v", false, "log debug messages")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "berth-tray: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("component", "tray")
	if err := run(*name, gui.FindBerth(*berth), *berth, *automation, log); err != nil {
		fmt.Fprintln(os.Stderr, "berth-tray:", err)
		os.Exit(1)
	}
}

func run(name, berth, berthFlag, automation string, log *slog.Logger) error {
	a := app.NewWithID(gui.AppID)
	var ui *gui.UI
	ctrl, err := gui.NewController(gui.Options{
		Instance: name,
		Start:    gui.BerthStarter(berth, nil),
		Notify: func(title, body string) {
			fyne.Do(func() { a.SendNotification(fyne.NewNotification(title, body)) })
		},
		Changed: func() { ui.Changed() }, // set before Run starts the callbacks
		Log:     log,
	})
	if err != nil {
		return err
	}
	loginArgs := []string{"--instance", name}
	if berthFlag != "" {
		loginArgs = append(loginArgs, "--berth", berthFlag)
	}
	var autostart gui.Autostarter
	if as, err := gui.CurrentAutostart(runtime.GOOS, loginArgs, name); err == nil {
		autostart = as
	} else {
		log.Warn("start at login unavailable", "err", err)
	}
	noTray := !trayAvailable()
	if noTray {
		log.Warn("no D-Bus session bus, so no system tray: the container window carries the menu, and closing it quits")
	}
	ui = gui.NewUI(gui.UIOptions{App: a, Controller: ctrl, Berth: berth, Autostart: autostart, NoTray: noTray})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.Lifecycle().SetOnStarted(func() {
		go ctrl.Run(ctx)
		if automation != "" {
			if err := gui.ServeAutomation(ctx, automation, ui, fyne.DoAndWait, windowCapture); err != nil {
				log.Error("automation hook", "err", err)
			} else {
				log.Info("automation hook listening", "socket", automation)
			}
		}
	})
	a.Run()
	ui.Close()
	return nil
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
