package gui

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/host/store"
)

// BindAddresses are the choices for where published ports are bound on the host.
var BindAddresses = []string{"127.0.0.1", "0.0.0.0"}

// PrefsForm is the Preferences window's content as the user typed it. The instance
// settings (CPUs, memory, disk, port bind address, file shares) live in the instance's
// berth.yaml and apply on the next start; the tray's own settings (quit behaviour, start
// at login) apply at once.
type PrefsForm struct {
	CPUs            string
	Memory          string // GiB
	Disk            string // GiB; grow only
	PortBindAddress string
	Shares          []fileshare.Share // mounted in the VM at the same path; none is valid
	StopOnQuit      bool              // Quit stops the VM too (else it keeps running)
	StartAtLogin    bool
}

// NewPrefsForm fills the form from the instance config and the tray's settings.
func NewPrefsForm(cfg store.Config, stopOnQuit, startAtLogin bool) PrefsForm {
	return PrefsForm{
		CPUs:            strconv.Itoa(cfg.CPUs),
		Memory:          strconv.FormatFloat(cfg.Memory, 'f', -1, 64),
		Disk:            strconv.Itoa(cfg.Disk),
		PortBindAddress: cfg.PortBindAddress,
		Shares:          slices.Clone(cfg.Shares),
		StopOnQuit:      stopOnQuit,
		StartAtLogin:    startAtLogin,
	}
}

// Apply returns cur with the form's instance settings, validated with the same rules as
// berth.yaml (store.Config.Validate) plus the data disk's grow-only rule. Changed shares
// are checked as a start checks them (fileshare.Validate: existing directories, no system
// directory, no overlaps); unchanged ones are left to the start, so a share whose disk is
// unplugged for now does not block saving the other settings.
func (f PrefsForm) Apply(cur store.Config) (store.Config, error) {
	cfg := cur
	var errs []error
	num := func(field, s string, dst *int) {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number", field, s))
			return
		}
		*dst = n
	}
	num("cpus", f.CPUs, &cfg.CPUs)
	if g, err := strconv.ParseFloat(strings.TrimSpace(f.Memory), 64); err != nil {
		errs = append(errs, fmt.Errorf("memory: %q is not a number of GiB (fractions allowed: 1.5)", f.Memory))
	} else {
		cfg.Memory = g
	}
	num("disk", f.Disk, &cfg.Disk)
	cfg.PortBindAddress = f.PortBindAddress
	cfg.Shares = slices.Clone(f.Shares)
	if len(errs) > 0 {
		return cur, errors.Join(errs...)
	}
	if err := store.CheckChange(cur, cfg); err != nil {
		return cur, err
	}
	if err := cfg.Validate(); err != nil {
		return cur, err
	}
	if !slices.Equal(cfg.Shares, cur.Shares) {
		if err := fileshare.Validate(cfg.Shares); err != nil {
			return cur, err
		}
	}
	return cfg, nil
}

// NeedsRestart reports whether a running VM must restart to use the new config.
func NeedsRestart(old, cfg store.Config) bool {
	return old.CPUs != cfg.CPUs || old.Memory != cfg.Memory || old.Disk != cfg.Disk ||
		old.PortBindAddress != cfg.PortBindAddress || !slices.Equal(old.Shares, cfg.Shares)
}

// Config returns the instance's config, or the defaults for an instance not created yet.
func (c *Controller) Config() (store.Config, error) {
	cfg, err := c.inst.Config()
	if errors.Is(err, fs.ErrNotExist) {
		return store.DefaultConfig(), nil
	}
	return cfg, err
}

// SavePrefs validates the form's instance settings and writes berth.yaml (creating the
// instance on first use). It reports whether the running VM must restart to apply them.
func (c *Controller) SavePrefs(f PrefsForm) (restart bool, err error) {
	cur, err := c.Config()
	if err != nil {
		return false, err
	}
	cfg, err := f.Apply(cur)
	if err != nil {
		return false, err
	}
	if _, statErr := os.Stat(c.inst.Path(store.ConfigFile)); errors.Is(statErr, fs.ErrNotExist) {
		if _, err := store.Create(c.inst.Name, cfg); err != nil {
			return false, err
		}
		return false, nil
	}
	if err := c.inst.SaveConfig(cfg); err != nil {
		return false, err
	}
	return c.inst.DaemonPID() != 0 && NeedsRestart(cur, cfg), nil
}
