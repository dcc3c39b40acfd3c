package store

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// IdleConfig is the `idle:` section of berth.yaml (docs/config.md, docs/resources.md).
type IdleConfig struct {
	// PauseAfter is how long the instance must be idle (no running container, no client)
	// before hostd pauses the VM's vCPUs; 0 turns automatic pausing off.
	PauseAfter Duration `yaml:"pauseAfter"`
}

// DefaultPauseAfter is idle.pauseAfter when berth.yaml does not set it.
const DefaultPauseAfter = Duration(5 * time.Minute)

func (c IdleConfig) validate() error {
	if c.PauseAfter < 0 || (c.PauseAfter != 0 && c.PauseAfter < Duration(time.Second)) {
		return fmt.Errorf("idle.pauseAfter: %s is out of range: want at least 1s, or 0 to turn pausing off", time.Duration(c.PauseAfter))
	}
	return nil
}

// Duration is a time.Duration written the Go way in berth.yaml: 5m, 90s, 1h30m, or 0.
type Duration time.Duration

// UnmarshalYAML reads a duration with a unit; a bare number other than 0 is refused, as
// it would say nothing about its unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v := strings.TrimSpace(n.Value)
	if n.Kind == yaml.ScalarNode && v == "0" {
		*d = 0
		return nil
	}
	p, err := time.ParseDuration(v)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration: want a number with a unit (5m, 90s, 1h30m) or 0", n.Line, v)
	}
	*d = Duration(p)
	return nil
}

// MarshalYAML writes the duration as Go prints it (5m0s).
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
