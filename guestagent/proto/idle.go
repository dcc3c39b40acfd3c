package proto

// Idle pause and guest clock (see docs/agent-protocol.md and docs/resources.md). Both are
// additions within Version 2: an older agent answers them with an unknown-type error, and
// the host then never pauses on its own and keeps setting the clock with TypeTime.
const (
	// TypeActivity is a stream on which the agent writes an Activity JSON line now and
	// whenever the number of running containers changes. The host pauses an idle VM only
	// while it knows that number is zero.
	TypeActivity = "activity"
	// TypeClock carries the host's UTC time in Request.TimeUnixNano. The agent measures its
	// own clock against it, corrects it (a step when far off, else a slew) and answers with
	// Response.Clock.
	TypeClock = "clock"
)

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

// Clock thresholds, on the offset the agent measures.
const (
	ClockSlewMin = 2_000_000   // 2 ms: below this the clock is left alone
	ClockStepMin = 100_000_000 // 100 ms: from here on a slew would take minutes; step
	ClockSetMin  = 500_000_000 // 500 ms: stepped with clock_settime to the host's time
)

// ClockResult answers TypeClock.
type ClockResult struct {
	// OffsetNanos is the guest clock minus the host's when the request arrived, before the
	// correction (positive: the guest was ahead). It includes the request's one-way delay.
	OffsetNanos int64  `json:"offsetNanos"`
	Action      string `json:"action"` // ClockNone, ClockSlew or ClockStep
}

// ClockAction picks the correction for an offset in nanoseconds.
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
