package store

import "fmt"

// RegistryConfig is the `registry:` section of berth.yaml: the local registry
// (registry.local:5000) that this instance serves (docs/cluster.md, "The local registry").
// In a cluster, `berth cluster create` turns it on for the first node only; the other
// members use that node's registry through the cluster record.
type RegistryConfig struct {
	// Enabled runs the registry in this instance's VM.
	Enabled bool `yaml:"enabled"`
	// HostPort is the host loopback port its API answers on (https://localhost:PORT); 0
	// forwards none. macOS's AirPlay receiver often holds 5000: pick another there.
	HostPort int `yaml:"hostPort"`
}

// DefaultRegistryHostPort is registry.hostPort when berth.yaml does not set it.
const DefaultRegistryHostPort = 5000

func (c RegistryConfig) validate() error {
	if c.HostPort < 0 || c.HostPort > 65535 {
		return fmt.Errorf("registry.hostPort: %d is out of range: want a port from 1 to 65535, or 0 for none", c.HostPort)
	}
	return nil
}
