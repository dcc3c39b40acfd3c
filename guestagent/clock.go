package guestagent

import (
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// clockPlan is what the agent does to its clock for one TypeClock request: the measured
// offset (guest minus host) and the correction proto.ClockAction picks for it.
type clockPlan struct {
	offset time.Duration
	action string
	// set: the step is done with clock_settime to the host's time (far off, where the
	// request's delay no longer matters) rather than by adjtimex(ADJ_SETOFFSET).
	set bool
}

func planClock(guest, host int64) clockPlan {
	off := guest - host
	p := clockPlan{offset: time.Duration(off), action: proto.ClockAction(off)}
	if p.action == proto.ClockStep && (off >= proto.ClockSetMin || off <= -proto.ClockSetMin) {
		p.set = true
	}
	return p
}

// splitNanos turns a signed nanosecond count into whole seconds and a non-negative
// nanosecond remainder, as adjtimex(ADJ_SETOFFSET|ADJ_NANO) wants its timeval.
func splitNanos(n int64) (sec, nsec int64) {
	sec, nsec = n/1e9, n%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return sec, nsec
}
