package guestagent

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

// adjtimex modes (linux/timex.h); golang.org/x/sys does not name them.
const (
	adjSetOffset        = 0x0100
	adjNano             = 0x2000
	adjOffsetSingleshot = 0x8001
)

// systemClock is the VM's CLOCK_REALTIME. Both corrections are relative, so the time the
// host's request took to arrive does not enter them: small ones are slewed (adjtime(3),
// at most 500 µs/s, so time never jumps for programs in the guest), larger ones stepped
// (adjtimex ADJ_SETOFFSET).
type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) Adjust(d time.Duration) (string, error) {
	action := proto.ClockAction(int64(d))
	switch action {
	case proto.ClockStep:
		sec, nsec := splitNanos(int64(d))
		tx := unix.Timex{Modes: adjSetOffset | adjNano}
		tx.Time.Sec, tx.Time.Usec = sec, nsec
		if _, err := unix.Adjtimex(&tx); err != nil {
			return action, fmt.Errorf("adjtimex(ADJ_SETOFFSET): %w", err)
		}
	case proto.ClockSlew:
		tx := unix.Timex{Modes: adjOffsetSingleshot, Offset: int64(d / time.Microsecond)}
		if _, err := unix.Adjtimex(&tx); err != nil {
			return action, fmt.Errorf("adjtimex(ADJ_OFFSET_SINGLESHOT): %w", err)
		}
	}
	return action, nil
}
