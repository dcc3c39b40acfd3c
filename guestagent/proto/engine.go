package proto

import "time"

// Engine configuration (see docs/agent-protocol.md, "Engine configuration"). An addition
// within Version 2: the host sends it right after the greeting, and an agent waits for it
// (bounded by EngineConfigWait) before it starts the engine on a fresh boot.

// TypeEngineConfig carries Request.Engine: what the agent installs before it starts
// containerd and dockerd. The answer comes once it is installed; a serve process that
// restarts finds it on disk and does not wait again.
const TypeEngineConfig = "engineConfig"

// EngineConfigWait bounds how long a freshly booted agent waits for TypeEngineConfig
// before it starts the engine with the image's defaults (a host that never sends one).
const EngineConfigWait = 3 * time.Minute

// EngineConfig is the engine's settings from berth.yaml and the host's environment.
type EngineConfig struct {
	// DaemonJSON is the whole /etc/docker/daemon.json (a JSON object); empty for none.
	DaemonJSON []byte `json:"daemonJSON,omitempty"`
	// Env is extra environment of dockerd and containerd (HTTP_PROXY=..., NAME=value).
	Env []string `json:"env,omitempty"`
	// CACerts is a PEM bundle the guest's trust store gets beside its own.
	CACerts string `json:"caCerts,omitempty"`
	// DNS and DNSSearch replace the name servers and extend the search domains of the
	// guest's own resolver configuration (containers get them through DaemonJSON).
	DNS       []string `json:"dns,omitempty"`
	DNSSearch []string `json:"dnsSearch,omitempty"`
	// Registry is the local registry; nil for none.
	Registry *RegistryConfig `json:"registry,omitempty"`
}

// RegistryConfig is EngineConfig.Registry: the local registry this guest's engine uses,
// and serves when Cert is set (docs/cluster.md, "The local registry").
type RegistryConfig struct {
	// Addr is the address RegistryName resolves to in this guest: its own loopback for a
	// registry of its own, the serving node's cluster address in a cluster.
	Addr string `json:"addr"`
	// CA is the PEM certificate of the CA that signed the registry's certificate; the
	// engine trusts it for RegistryName:RegistryPort (certs.d), not as an insecure registry.
	CA string `json:"ca"`
	// Cert and Key (PEM) are the registry's own certificate and key: set only for the
	// guest that serves it, which then runs the registry on RegistryPort.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}
