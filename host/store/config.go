// Package store owns berth's state on disk: the per-instance directory, its config file,
// state file and lock. See docs/state-dir.md.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/berth-dev/berth/fileshare"
	"gopkg.in/yaml.v3"
)

// Config is an instance's berth.yaml. Sizes are in GiB, as in Colima and Lima.
type Config struct {
	CPUs   int    `yaml:"cpus"`
	Memory int    `yaml:"memory"` // GiB
	Disk   int    `yaml:"disk"`   // GiB; the data disk only grows
	Arch   string `yaml:"arch"`   // guest architecture; defaults to the host's
	// Accel forces the accelerator: auto, kvm, hvf, whpx or tcg.
	Accel string `yaml:"accel"`
	// Images overrides the guest image directory (holding <arch>/vmlinuz, ...).
	Images string `yaml:"images,omitempty"`
	// BootTimeout bounds each wait of a start (agent up, engine ready), in seconds.
	BootTimeout int `yaml:"bootTimeout"`
	// PortBindAddress is where ports published on all addresses are bound on the host:
	// 127.0.0.1 (default) or 0.0.0.0. See docs/ports.md.
	PortBindAddress string `yaml:"portBindAddress"`
	// PortListeners says which guest listeners that are not published container ports are
	// forwarded: none, public (on 0.0.0.0 or ::; default) or all.
	PortListeners string `yaml:"portListeners"`
	// Shares are host directories mounted in the VM at the same path; the default is the
	// home directory. An empty list shares nothing. See docs/file-sharing.md.
	Shares []fileshare.Share `yaml:"shares"`
}

// DefaultConfig is what a new instance gets.
func DefaultConfig() Config {
	return Config{
		CPUs:            min(2, runtime.NumCPU()),
		Memory:          2,
		Disk:            64,
		Arch:            runtime.GOARCH,
		Accel:           "auto",
		BootTimeout:     600,
		PortBindAddress: "127.0.0.1",
		PortListeners:   "public",
		Shares:          fileshare.Default(),
	}
}

// ParseConfig reads berth.yaml. Unknown keys are errors, and errors carry the line, so a
// typo never silently falls back to a default.
func ParseConfig(data []byte) (Config, error) {
	c := DefaultConfig()
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// "line 2: field memroy not found in type store.Config" → without Go's type name.
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = strings.Replace(m, " in type store.Config", "", 1)
			}
			return c, errors.New(strings.Join(msgs, "; "))
		}
		return c, errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return c, c.Validate()
}

// Validate checks ranges.
func (c Config) Validate() error {
	var errs []error
	if c.CPUs < 1 || c.CPUs > 256 {
		errs = append(errs, fmt.Errorf("cpus: %d is out of range 1-256", c.CPUs))
	}
	if c.Memory < 1 || c.Memory > 1024 {
		errs = append(errs, fmt.Errorf("memory: %d GiB is out of range 1-1024", c.Memory))
	}
	if c.Disk < 4 || c.Disk > 16384 {
		errs = append(errs, fmt.Errorf("disk: %d GiB is out of range 4-16384", c.Disk))
	}
	switch c.Arch {
	case "amd64", "arm64":
	default:
		errs = append(errs, fmt.Errorf("arch: %q is not amd64 or arm64", c.Arch))
	}
	switch c.Accel {
	case "auto", "kvm", "hvf", "whpx", "tcg":
	default:
		errs = append(errs, fmt.Errorf("accel: %q is not one of auto, kvm, hvf, whpx, tcg", c.Accel))
	}
	if c.BootTimeout < 10 {
		errs = append(errs, fmt.Errorf("bootTimeout: %d s is too short (at least 10)", c.BootTimeout))
	}
	switch c.PortBindAddress {
	case "127.0.0.1", "0.0.0.0":
	default:
		errs = append(errs, fmt.Errorf("portBindAddress: %q is not 127.0.0.1 or 0.0.0.0", c.PortBindAddress))
	}
	switch c.PortListeners {
	case "none", "public", "all":
	default:
		errs = append(errs, fmt.Errorf("portListeners: %q is not none, public or all", c.PortListeners))
	}
	return errors.Join(errs...)
}

// Marshal renders the config as YAML.
func (c Config) Marshal() []byte {
	b, _ := yaml.Marshal(c)
	return b
}
