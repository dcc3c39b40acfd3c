package api

import (
	"context"
	"net/http"
	"time"
)

// StatePaused: the VM's vCPUs are stopped because the instance was idle (idle.pauseAfter) or
// by `berth pause`. The docker socket and forwarded ports stay open; the first new client
// resumes the VM before its first byte is forwarded. See docs/resources.md.
const StatePaused = "Paused"

// Up reports whether an instance in state serves clients: Running, Degraded, or Paused
// (which resumes on the first client).
func Up(state string) bool {
	return state == StateRunning || state == StateDegraded || state == StatePaused
}

// Idle is Status.Idle: the idle pause.
type Idle struct {
	// PauseAfter is idle.pauseAfter; 0 when automatic pausing is off (or the driver cannot
	// pause: then Supported is false).
	PauseAfter time.Duration `json:"pauseAfter"`
	Supported  bool          `json:"supported"`
	// Containers is the number of running containers the agent reported last; -1 unknown.
	Containers int `json:"containers"`
	// Clients is the number of client connections and streams that keep the VM awake now.
	Clients int `json:"clients"`
	// LastActivity is when a client or a container was last seen.
	LastActivity time.Time `json:"lastActivity,omitzero"`
	PausedAt     time.Time `json:"pausedAt,omitzero"`
	// Pauses and Resumes count this run's transitions; LastResume is how long the last
	// resume took, from the request to the VM running again.
	Pauses     int           `json:"pauses"`
	Resumes    int           `json:"resumes"`
	LastResume time.Duration `json:"lastResume,omitempty"`
}

// Clock is Status.Clock: the guest clock against the host's.
type Clock struct {
	// Offset is the guest clock minus the host's at the last check, before its correction;
	// it is right to within Uncertainty (half the round trip of the reading it came from).
	Offset      time.Duration `json:"offset"`
	Uncertainty time.Duration `json:"uncertainty"`
	// Action is what the agent did about it: none, slew or step. An offset within its
	// uncertainty is left alone.
	Action    string    `json:"action"`
	CheckedAt time.Time `json:"checkedAt"`
	// Reason is why that check ran: session, periodic, resume, host-sleep, stall, recheck.
	Reason string `json:"reason"`
	// Reads is how many times the check read the guest clock to find a round trip short
	// enough to trust (a guest just continued after a stall answers slowly for a while).
	Reads int    `json:"reads"`
	Error string `json:"error,omitempty"`
}

// Pause stops the VM's vCPUs (POST /v1/pause) and returns the new status.
func (c *Client) Pause(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodPost, "/v1/pause", nil, &s)
	return s, err
}

// Resume continues a paused VM (POST /v1/resume) and returns the new status.
func (c *Client) Resume(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodPost, "/v1/resume", nil, &s)
	return s, err
}
