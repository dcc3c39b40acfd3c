package proto

import "strings"

// Idle pause and guest clock (see docs/agent-protocol.md and docs/resources.md). Both are
// additions within Version 2: an older agent answers them with an unknown-type error, and
// the host then never pauses on its own and keeps setting the clock with TypeTime.
const (
	// TypeActivity is a stream on which the agent writes an Activity JSON line now and
	// whenever the number of running containers changes. The host pauses an idle VM only
	// while it knows that number is zero.
	TypeActivity = "activity"
	// TypeActivityCheck asks the engine itself, now, how many containers run: the answer's
	// Activity. The host asks it right before an idle pause, so that a container started
	// just before the VM stood still (its event not yet seen by the agent) keeps it awake.
	TypeActivityCheck = "activity-check"
	// TypeClockRead asks for the guest's clock: Response.Clock.GuestUnixNano, read as the
	// request arrived. The host brackets it with its own send and receive times (NTP's
	// method), so it knows the offset to within half the round trip, however long either
	// direction took.
	TypeClockRead = "clock-read"
	// TypeClockAdjust moves the guest clock by Request.ClockAdjustNanos (added to it): a
	// slew when small, a step when far off (ClockAction); the answer's Clock.Action says
	// which. A relative correction does not depend on how long the request took to arrive.
	TypeClockAdjust = "clock-adjust"
)

// UnknownType starts the error an agent answers a request type it does not know with:
// a host asking for something newer than the agent falls back on it (IsUnknownType).
const UnknownType = "unknown request type"

// IsUnknownType reports whether err is the agent's answer to a request type it lacks.
func IsUnknownType(err error) bool {
	return err != nil && strings.Contains(err.Error(), UnknownType)
}

// Activity is one line of a TypeActivity stream.
type Activity struct {
	// Containers is the number of running containers; -1 while the agent does not know yet
	// (the engine is not answering).
	Containers int `json:"containers"`
}

// Clock corrections the agent applies.
const (
	ClockNone = "none" // within ClockSlewMin: nothing to do
	ClockSlew = "slew" // adjtimex(ADJ_OFFSET_SINGLESHOT): the kernel slews at most 500 µs/s
	ClockStep = "step" // adjtimex(ADJ_SETOFFSET) or clock_settime: the clock jumps
)

// Clock thresholds, on the size of a correction.
const (
	ClockSlewMin = 2_000_000   // 2 ms: below this the clock is left alone
	ClockStepMin = 100_000_000 // 100 ms: from here on a slew would take minutes; step
)

// ClockResult answers TypeClockRead (GuestUnixNano) and TypeClockAdjust (Action).
type ClockResult struct {
	GuestUnixNano int64  `json:"guestUnixNano,omitempty"`
	Action        string `json:"action,omitempty"` // ClockNone, ClockSlew or ClockStep
}

// ClockAction picks the correction for an adjustment (or offset) in nanoseconds.
func ClockAction(offset int64) string {
	if offset < 0 {
		offset = -offset
	}
	switch {
	case offset >= ClockStepMin:
		return ClockStep
	case offset >= ClockSlewMin:
		return ClockSlew
	default:
		return ClockNone
	}
}
