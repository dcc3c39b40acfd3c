package api

import "time"

// The control API's view of the guest. These types are the API's own: the agent protocol
// (guestagent/proto) may change between releases, and hostd converts its answers into these
// (host/daemon/apiconv.go), so a guest protocol change is never a public API change. Their
// JSON is pinned by api_test.go.

// Guest is Status.Guest: what the agent reported about the guest.
type Guest struct {
	ProtocolVersion int    `json:"protocolVersion"` // the agent protocol's version
	AgentVersion    string `json:"agentVersion"`
	Kernel          string `json:"kernel"` // uname -r
	Arch            string `json:"arch"`
	// KernelBoot is the guest uptime at which the agent started as /init: the kernel's own
	// share of boot time.
	KernelBoot    time.Duration `json:"kernelBoot"`
	Uptime        time.Duration `json:"uptime"`
	Engine        string        `json:"engine"` // EngineStarting, EngineRunning, EngineStopped or EngineFailed
	EngineVersion string        `json:"engineVersion,omitempty"`
	IP            string        `json:"ip,omitempty"` // the guest's address on its network
	DataDisk      DiskUsage     `json:"dataDisk"`

	// The engine stack's versions (what `docker version` prints for the server: API version,
	// containerd, runc, docker-init); empty until the engine first answered.
	EngineAPIVersion  string `json:"engineAPIVersion,omitempty"`
	ContainerdVersion string `json:"containerdVersion,omitempty"`
	RuncVersion       string `json:"runcVersion,omitempty"`
	InitVersion       string `json:"initVersion,omitempty"` // docker-init (tini)
	// OS is the guest image's distribution ("Debian GNU/Linux 13 (trixie)").
	OS string `json:"os,omitempty"`
}

// Docker engine states in the guest (Guest.Engine).
const (
	EngineStarting = "starting"
	EngineRunning  = "running"
	EngineStopped  = "stopped"
	EngineFailed   = "failed"
)

// DiskUsage is the guest data disk's usage in bytes (Guest.DataDisk, Event.Disk).
type DiskUsage struct {
	Total uint64 `json:"total"`
	Used  uint64 `json:"used"`
}

// DiskNearlyFull is the share of the data disk above which it counts as nearly full: hostd
// reports a crossing at once (EventDisk) and the tray warns.
const DiskNearlyFull = 0.90

// NearlyFull reports whether more than DiskNearlyFull of the disk is used.
func (u DiskUsage) NearlyFull() bool {
	// In floating point: the integer products overflow for the largest values.
	return u.Total > 0 && float64(u.Used) > DiskNearlyFull*float64(u.Total)
}

// ExecRequest is the body of POST /v1/exec: a process to run in the guest.
type ExecRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"` // KEY=value, added to the guest's environment
	Dir  string   `json:"dir,omitempty"` // working directory in the guest
	TTY  bool     `json:"tty,omitempty"` // run on a pty; stdout then carries all output
	Rows uint16   `json:"rows,omitempty"`
	Cols uint16   `json:"cols,omitempty"`
}
