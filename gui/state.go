// Package gui is berth's tray app: a client of one instance's control API (hostd.sock)
// and of its forwarded Docker socket. See docs/tray.md.
//
// Besides those two sockets it touches the instance's directory the way the CLI does, for
// what no running daemon can answer: Preferences reads and writes berth.yaml through
// host/store (the settings apply at the next start, and a stopped instance has no daemon to
// ask), the logs window reads hostd.log and console.log, the reconnect loop watches the
// directory for a daemon started elsewhere, and Start spawns the daemon (Options.Start).
//
// The logic is plain Go and tested without a display: Controller follows the daemon and
// the engine and runs actions; Snapshot, Menu and PrefsForm are values computed from it.
// The fyne widgets (ui*.go) only render those values and forward clicks.
package gui

import (
	"fmt"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// Look is what the tray icon shows at a glance.
type Look int

// Looks, in the order of their icons.
const (
	LookStopped Look = iota
	LookStarting
	LookRunning
	LookDegraded
	LookError
)

func (l Look) String() string {
	return [...]string{"stopped", "starting", "running", "degraded", "error"}[l]
}

// Busy names a tray action in progress.
const (
	BusyStarting   = "starting"
	BusyStopping   = "stopping"
	BusyRestarting = "restarting"
)

// Snapshot is everything the widgets show; the controller hands out copies.
type Snapshot struct {
	Instance string
	// State is the daemon's state (api.State*), or Stopped when no daemon runs.
	State string
	Phase string // start phase while Starting
	// Error is the daemon's error, or the last run's error while stopped.
	Error string
	// ActionError is the failure of the last tray action (start, stop, restart); the
	// next action clears it.
	ActionError string
	Daemon      bool       // a daemon answers on hostd.sock
	Status      api.Status // the last status read from the daemon
	Busy        string     // a tray action in progress (Busy*), "" when none
	Context     string     // docker context name

	Containers []Container
	// EngineError says why the container list could not be read ("" when it could).
	EngineError string
	EngineReady bool // the list reflects the engine
	Updated     time.Time
}

// Look maps the snapshot to an icon.
func (s Snapshot) Look() Look {
	switch {
	case s.Busy == BusyStarting || s.Busy == BusyRestarting:
		return LookStarting
	case s.State == api.StateRunning || s.State == api.StatePaused:
		return LookRunning
	case s.State == api.StateStarting || s.State == api.StateStopping || s.Busy == BusyStopping:
		return LookStarting
	case s.State == api.StateDegraded:
		return LookDegraded
	case s.State == api.StateError || s.Error != "" || s.ActionError != "":
		return LookError
	}
	return LookStopped
}

// Headline is the one-line state shown at the top of the menu and the window.
func (s Snapshot) Headline() string {
	name := s.Instance
	switch {
	case s.Busy == BusyRestarting:
		return fmt.Sprintf("%s: restarting…", name)
	case s.Busy == BusyStarting && s.State != api.StateStarting:
		return fmt.Sprintf("%s: starting…", name)
	case s.Busy == BusyStopping && s.State != api.StateStopping:
		return fmt.Sprintf("%s: stopping…", name)
	}
	switch s.State {
	case api.StateStarting:
		if s.Phase != "" {
			return fmt.Sprintf("%s: starting (%s)…", name, s.Phase)
		}
		return fmt.Sprintf("%s: starting…", name)
	case api.StateStopping:
		return fmt.Sprintf("%s: stopping…", name)
	case api.StateRunning:
		return fmt.Sprintf("%s: running", name)
	case api.StatePaused:
		return fmt.Sprintf("%s: paused while idle (resumes on use)", name)
	case api.StateDegraded:
		return fmt.Sprintf("%s: degraded (Docker engine restarting)", name)
	case api.StateError:
		return fmt.Sprintf("%s: error", name)
	}
	if s.ActionError != "" {
		return fmt.Sprintf("%s: stopped (start failed)", name)
	}
	if s.Error != "" {
		return fmt.Sprintf("%s: stopped (last run failed)", name)
	}
	return fmt.Sprintf("%s: stopped", name)
}

// Up reports whether the engine is (or should soon be) usable: Running or Degraded.
func (s Snapshot) Up() bool {
	return api.Up(s.State)
}

// Menu item labels; the automation hook clicks items by these names.
const (
	ItemStatus      = "Status"
	ItemStart       = "Start"
	ItemStop        = "Stop"
	ItemRestart     = "Restart"
	ItemContainers  = "Containers…"
	ItemShell       = "Open shell"
	ItemCopyContext = "Copy docker context command"
	ItemPreferences = "Preferences…"
	ItemLogs        = "Open logs"
	ItemQuit        = "Quit"
)

// MenuItem is one entry of the tray menu; an empty ID is a separator.
type MenuItem struct {
	ID      string `json:"id"`    // one of the Item* names
	Label   string `json:"label"` // what is shown
	Enabled bool   `json:"enabled"`
}

// Menu computes the tray menu for a snapshot.
func Menu(s Snapshot) []MenuItem {
	idle := s.Busy == ""
	stopped := !s.Daemon && s.State != api.StateStarting && s.State != api.StateStopping
	return []MenuItem{
		{ID: ItemStatus, Label: s.Headline()},
		{},
		{ID: ItemStart, Label: ItemStart, Enabled: idle && stopped},
		{ID: ItemStop, Label: ItemStop, Enabled: idle && s.Daemon && s.State != api.StateStopping},
		{ID: ItemRestart, Label: ItemRestart, Enabled: idle && s.Daemon && s.State != api.StateStarting && s.State != api.StateStopping},
		{},
		{ID: ItemContainers, Label: ItemContainers, Enabled: true},
		{ID: ItemShell, Label: ItemShell, Enabled: s.Up()},
		{ID: ItemCopyContext, Label: fmt.Sprintf("Copy `docker context use %s`", s.Context), Enabled: true},
		{},
		{ID: ItemPreferences, Label: ItemPreferences, Enabled: true},
		{ID: ItemLogs, Label: ItemLogs, Enabled: true},
		{},
		{ID: ItemQuit, Label: ItemQuit, Enabled: true},
	}
}

// DiskNearlyFull is the share of the data disk above which the tray warns. The daemon
// reports a crossing of it at once (api.EventDisk), so the warning comes during a run.
const DiskNearlyFull = api.DiskNearlyFull

// DiskRearm is the share the data disk must fall below before the next crossing of
// DiskNearlyFull warns again: a user who cleans up and fills it again is told again, and
// usage wobbling around the threshold warns only once.
const DiskRearm = 0.85

// diskWarning returns the warning for a status whose data disk is nearly full, or "".
func diskWarning(st api.Status) string {
	if st.Guest == nil || !st.Guest.DataDisk.NearlyFull() {
		return ""
	}
	d := st.Guest.DataDisk
	used := float64(d.Used) / float64(d.Total)
	return fmt.Sprintf("%.0f%% of %.1f GiB used: remove unused images and volumes (docker system prune) or grow the disk in Preferences",
		used*100, float64(d.Total)/(1<<30))
}

// diskRearmed reports whether a status shows the data disk below DiskRearm.
func diskRearmed(st api.Status) bool {
	if st.Guest == nil || st.Guest.DataDisk.Total == 0 {
		return false
	}
	d := st.Guest.DataDisk
	return float64(d.Used) < DiskRearm*float64(d.Total)
}
