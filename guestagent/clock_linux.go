package guestagent

import (
	"fmt"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"golang.org/x/sys/unix"
)

// adjtimex modes (linux/timex.h); golang.org/x/sys does not name them.
const (
	adjSetOffset        = 0x0100
	adjNano             = 0x2000
	adjOffsetSingleshot = 0x8001
)

// clock measures the guest clock against the host's time and corrects it (TypeClock): far
// off it is stepped, slightly off it is slewed, so that small corrections never make the
// time jump for programs in the guest.
func (s *Server) clock(hostNanos int64) (*proto.ClockResult, error) {
	now := time.Now()
	p := planClock(now.UnixNano(), hostNanos)
	if s.boot == nil {
		// Not the VM's agent (tests serve it on the host): measure, never touch the clock.
		p.action, p.set = proto.ClockNone, false
	}
	res := &proto.ClockResult{OffsetNanos: int64(p.offset), Action: p.action}
	switch {
	case p.set:
		// The host's time plus what has passed here since it was measured.
		ts := unix.NsecToTimespec(hostNanos + int64(time.Since(now)))
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return res, fmt.Errorf("clock_settime: %w", err)
		}
	case p.action == proto.ClockStep:
		sec, nsec := splitNanos(-int64(p.offset))
		tx := unix.Timex{Modes: adjSetOffset | adjNano}
		tx.Time.Sec, tx.Time.Usec = sec, nsec
		if _, err := unix.Adjtimex(&tx); err != nil {
			return res, fmt.Errorf("adjtimex(ADJ_SETOFFSET): %w", err)
		}
	case p.action == proto.ClockSlew:
		// adjtime(3): the offset in microseconds, slewed at 500 ppm.
		tx := unix.Timex{Modes: adjOffsetSingleshot, Offset: -int64(p.offset) / 1000}
		if _, err := unix.Adjtimex(&tx); err != nil {
			return res, fmt.Errorf("adjtimex(ADJ_OFFSET_SINGLESHOT): %w", err)
		}
	}
	if p.action != proto.ClockNone {
		s.log.Debug("guest clock corrected", "offset", p.offset, "action", p.action)
	}
	return res, nil
}
