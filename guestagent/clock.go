package guestagent

import (
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// GuestClock is the clock the agent reads and corrects for the host (TypeClockRead,
// TypeClockAdjust; docs/resources.md): the VM's system clock, or a test's stand-in.
type GuestClock interface {
	Now() time.Time
	// Adjust moves the clock by d (added to it): a slew when small, a step when
	// proto.ClockStepMin or more. It returns the proto.ClockAction it took.
	Adjust(d time.Duration) (action string, err error)
}

// readOnlyClock is the clock of an agent that is not the VM's init (tests serve it on the
// host): it reads the host's clock and never changes it.
type readOnlyClock struct{}

func (readOnlyClock) Now() time.Time                       { return time.Now() }
func (readOnlyClock) Adjust(time.Duration) (string, error) { return proto.ClockNone, nil }

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
