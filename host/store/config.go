// Package store owns berth's state on disk: the per-instance directory, its config file,
// state file and lock. See docs/state-dir.md.
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/fileshare"
	"go.yaml.in/yaml/v3"
)

// Config is an instance's berth.yaml. Sizes are in GiB, as in Colima and Lima. Every key
// is documented in docs/config.md and described in Keys (keys.go); `berth config` reads
// and writes them, and a unit test checks all three stay in step. To add a key: a field
// with a yaml tag here, its check in Validate (messages "key: value ...: want ..."), an
// entry in Keys and a section in docs/config.md.
type Config struct {
	CPUs int `yaml:"cpus"`
	// Memory is in GiB; fractions are allowed (1.5 is 1536 MiB). Files written before
	// fractions were allowed hold whole numbers, which read the same.
	Memory float64 `yaml:"memory"`
	Disk   int     `yaml:"disk"` // GiB; the data disk only grows
	Arch   string  `yaml:"arch"` // guest architecture; defaults to the host's
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
	// DNS lists the name servers (IP addresses) the guest and its containers use instead
	// of berth's own resolver, which forwards to the host's.
	DNS []string `yaml:"dns,omitempty"`
	// Env is extra environment for the guest's container engine (dockerd, containerd).
	Env map[string]string `yaml:"env,omitempty"`
	// Idle: when hostd pauses an idle VM (idle.go, docs/resources.md).
	Idle IdleConfig `yaml:"idle"`
	// The engine settings below are checked in engine.go and described in docs/config.md,
	// "Engine, proxy, CA, DNS".
	// DNSSearch lists search domains for the guest and its containers.
	DNSSearch []string `yaml:"dnsSearch,omitempty"`
	// Proxy is the HTTP proxy of the guest's engine; empty fields come from berth's
	// environment.
	Proxy ProxyConfig `yaml:"proxy,omitempty"`
	// CACerts are PEM files of CAs the guest trusts, beside the host's store.
	CACerts []string `yaml:"caCerts,omitempty"`
	// HostCACerts installs the host's trusted CAs in the guest (default true).
	HostCACerts bool `yaml:"hostCACerts"`
	// Docker is the guest's daemon.json (registry mirrors, log options, address pools...).
	Docker map[string]any `yaml:"docker,omitempty"`
	// MountCheck refuses docker bind mounts of host paths that no share carries (default
	// true). See docs/file-sharing.md.
	MountCheck bool `yaml:"mountCheck"`
	// Cluster names the cluster the instance is a node of (host/cluster, docs/cluster.md):
	// hostd attaches it to that cluster's network. `berth cluster create` sets it.
	Cluster string `yaml:"cluster,omitempty"`
	// Registry: the local registry this instance serves (registry.go, docs/cluster.md).
	Registry RegistryConfig `yaml:"registry"`
}

// MemoryMiB is Memory in MiB, rounded to the nearest MiB.
func (c Config) MemoryMiB() int { return int(math.Round(c.Memory * 1024)) }

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
		Idle:            IdleConfig{PauseAfter: DefaultPauseAfter},
		HostCACerts:     true,
		MountCheck:      true,
		Registry:        RegistryConfig{HostPort: DefaultRegistryHostPort},
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

// Validate checks every key. Each message names the key, the value and what is allowed.
func (c Config) Validate() error {
	var errs []error
	if c.Cluster != "" && (ValidName(c.Cluster+"-200") != nil || strings.HasPrefix(c.Cluster, "_")) {
		errs = append(errs, fmt.Errorf("cluster: %q is not a cluster name: want 1-27 lower-case letters, digits and '-'", c.Cluster))
	}
	if c.CPUs < 1 || c.CPUs > 256 {
		errs = append(errs, fmt.Errorf("cpus: %d is out of range: want a whole number from 1 to 256", c.CPUs))
	}
	if math.IsNaN(c.Memory) || c.Memory < 1 || c.Memory > 1024 {
		errs = append(errs, fmt.Errorf("memory: %s GiB is out of range: want a number of GiB from 1 to 1024 (fractions allowed: 1.5 is 1536 MiB)", formatGiB(c.Memory)))
	}
	if c.Disk < 4 || c.Disk > 16384 {
		errs = append(errs, fmt.Errorf("disk: %d GiB is out of range: want a whole number of GiB from 4 to 16384", c.Disk))
	}
	switch c.Arch {
	case "amd64", "arm64":
	default:
		errs = append(errs, fmt.Errorf("arch: %q is not allowed: want amd64 or arm64", c.Arch))
	}
	switch c.Accel {
	case "auto", "kvm", "hvf", "whpx", "tcg":
	default:
		errs = append(errs, fmt.Errorf("accel: %q is not allowed: want one of auto, kvm, hvf, whpx, tcg", c.Accel))
	}
	if c.BootTimeout < 10 {
		errs = append(errs, fmt.Errorf("bootTimeout: %d s is too short: want at least 10 (seconds)", c.BootTimeout))
	}
	switch c.PortBindAddress {
	case "127.0.0.1", "0.0.0.0":
	default:
		errs = append(errs, fmt.Errorf("portBindAddress: %q is not allowed: want 127.0.0.1 or 0.0.0.0", c.PortBindAddress))
	}
	switch c.PortListeners {
	case "none", "public", "all":
	default:
		errs = append(errs, fmt.Errorf("portListeners: %q is not allowed: want none, public or all", c.PortListeners))
	}
	for _, d := range c.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			errs = append(errs, fmt.Errorf("dns: %q is not allowed: want IP addresses (e.g. 1.1.1.1)", d))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		if !validEnvName(k) {
			errs = append(errs, fmt.Errorf("env: %q is not allowed as a name: want letters, digits and _, not starting with a digit", k))
		}
		if strings.ContainsAny(c.Env[k], "\x00\n") {
			errs = append(errs, fmt.Errorf("env: the value of %s contains a NUL or newline", k))
		}
	}
	if err := c.Idle.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Registry.validate(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateEngine()...)
	return errors.Join(errs...)
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, r := range k {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// formatGiB prints a GiB amount without trailing zeros: 2, 2.5, 1.25.
func formatGiB(g float64) string { return strconv.FormatFloat(g, 'f', -1, 64) }

// Marshal renders the config as YAML.
func (c Config) Marshal() []byte {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	enc.Encode(c)
	enc.Close()
	return b.Bytes()
}
