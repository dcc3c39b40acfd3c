// Package api is the host daemon's control API: HTTP+JSON on the instance's 0600 unix
// socket. The CLI and the tray are both clients of it. See docs/control-api.md.
package api

import "time"

// States of an instance.
const (
	StateStopped  = "Stopped"
	StateStarting = "Starting"
	StateRunning  = "Running"
	StateDegraded = "Degraded"
	StateStopping = "Stopping"
	StateError    = "Error"
	// StateBroken is never a daemon's: `berth list` and the tray show it for an instance
	// whose berth.yaml does not read (hostd cannot start it). `berth delete` removes it.
	StateBroken = "Broken"
	// StateIncompatible is never a daemon's either: an instance whose directory a newer
	// berth wrote (store.ErrIncompatible). This berth leaves it alone; a newer one runs it.
	StateIncompatible = "Incompatible"
)

// Start phases, in order.
const (
	PhasePrepare = "prepare" // disks, network, image checks
	PhaseKernel  = "kernel"  // VM launched, kernel booting
	PhaseAgent   = "agent"   // agent answered
	PhaseEngine  = "engine"  // Docker engine answers in the guest
	PhaseSocket  = "socket"  // docker.sock forwarded and the context written
)

// Status is GET /v1/status.
type Status struct {
	Name          string        `json:"name"`
	State         string        `json:"state"`
	Phase         string        `json:"phase,omitempty"`
	Error         string        `json:"error,omitempty"`
	PID           int           `json:"pid"`
	Accel         string        `json:"accel,omitempty"`
	Arch          string        `json:"arch,omitempty"`
	CPUs          int           `json:"cpus"`
	MemoryGiB     float64       `json:"memoryGiB"` // fractions allowed: 2.5
	MemoryMiB     int           `json:"memoryMiB"`
	DiskGiB       int           `json:"diskGiB"`
	DockerSocket  string        `json:"dockerSocket"`
	DockerContext string        `json:"dockerContext"`
	StartedAt     time.Time     `json:"startedAt,omitzero"`
	Phases        []PhaseTiming `json:"phases,omitempty"`
	Ports         []PortForward `json:"ports,omitempty"`
	Guest         *Guest        `json:"guest,omitempty"`
	// Hostd is the daemon's own footprint, for diagnostics and the leak checks of the
	// reliability suite (docs/reliability.md).
	Hostd *Process `json:"hostd,omitempty"`
	// Idle and Clock: the idle pause and the guest clock (idle.go).
	Idle  *Idle  `json:"idle,omitempty"`
	Clock *Clock `json:"clock,omitempty"`

	// Cluster is the cluster the instance is a node of (docs/cluster.md); `berth list`
	// fills it from the config.
	Cluster string `json:"cluster,omitempty"`
}

// Process is a process's footprint.
type Process struct {
	Goroutines int    `json:"goroutines"`
	FDs        int    `json:"fds,omitempty"`      // open file descriptors (Linux)
	RSSBytes   uint64 `json:"rssBytes,omitempty"` // resident memory (Linux)
}

// PhaseTiming records when a start phase completed, relative to the start.
type PhaseTiming struct {
	Phase string        `json:"phase"`
	At    time.Duration `json:"at"`
}

// Event is one line of GET /v1/events (newline-delimited JSON).
type Event struct {
	Time time.Time `json:"time"`
	// Type is empty for state, phase and problem events, or EventDisk. Every event carries
	// the current State, so a client that knows no types can still follow the state.
	Type    string `json:"type,omitempty"`
	State   string `json:"state"`
	Phase   string `json:"phase,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
	// Done marks the completion of Phase (otherwise the event starts it).
	Done bool `json:"done,omitempty"`
	// Disk is the guest's data-disk usage, on EventDisk events.
	Disk *DiskUsage `json:"disk,omitempty"`
}

// Event types.
const (
	// EventDisk: the guest's data-disk usage changed (by at least 1% of the disk, or it
	// crossed DiskNearlyFull); Status.Guest.DataDisk now holds the same value.
	EventDisk = "disk"
)

// StopRequest is POST /v1/stop.
type StopRequest struct {
	Force bool `json:"force,omitempty"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// PortForward is one guest port on the host (GET /v1/ports).
type PortForward struct {
	Proto     string `json:"proto"`
	HostIP    string `json:"hostIP"` // the host address bound
	HostPort  int    `json:"hostPort"`
	GuestIP   string `json:"guestIP"` // the address the container published (or the listener's)
	GuestPort int    `json:"guestPort"`
	Container string `json:"container,omitempty"`
	Source    string `json:"source"`          // "container", "listener" or "registry" (hostd's own forward of the local registry)
	State     string `json:"state"`           // "active" or "failed"
	Error     string `json:"error,omitempty"` // why it failed, e.g. the host port is in use
}

// Mount is one shared directory (GET /v1/mounts).
type Mount struct {
	Path     string `json:"path"`
	Type     string `json:"type"` // virtiofs, 9p or drvfs
	ReadOnly bool   `json:"readOnly"`
	Notify   bool   `json:"notify"`          // host changes are replayed in the guest
	Watched  int    `json:"watchedDirs"`     // directories the host watches
	State    string `json:"state"`           // "mounted" or "failed"
	Error    string `json:"error,omitempty"` // why it failed
}
