package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// Guest clock (docs/resources.md). hostd checks the guest clock at every agent session,
// every clockEvery, right after a resume, when the host's wall clock jumped against its
// monotonic clock (the host slept: the guest's clock stood still meanwhile) and when a
// ping shows the VM stood still (its process was stopped). A check reads the guest clock
// between two readings of the host's (NTP's method: the offset is known to within half the
// round trip) and has the agent move it by the offset found (a slew or a step,
// proto.ClockAction), a relative correction that the request's own delay does not touch.
//
// One timer serves every periodic check of a session (heartbeat, in idle.go: the ping,
// the host-sleep comparison, the periodic clock check), so an idle hostd wakes once per
// clockTick and for nothing else; clockLoop only runs the checks it is asked for.

// Reasons for a clock check, shown in Status.Clock.
const (
	clockSession   = "session"
	clockPeriodic  = "periodic"
	clockResume    = "resume"
	clockHostSleep = "host-sleep"
	clockStall     = "stall"
	clockRecheck   = "recheck"
)

// Clock timing; variables for tests.
var (
	clockEvery     = 60 * time.Second
	clockTick      = 5 * time.Second  // how often the host's clocks are compared
	clockJump      = time.Second      // a wall-clock jump beyond the monotonic one that counts as a sleep
	clockCallBound = 10 * time.Second // one check
	clockRetry     = 200 * time.Millisecond
	clockRecheckIn = 2 * time.Second
)

// Clock reads: a check reads the guest clock up to clockReads times, clockRetry apart,
// until a round trip is under clockTrustRTT (the channel's own delay: under TCG a few ms
// to tens of ms; a guest just continued after a stall is busy catching up for a while).
// A check that found no such round trip is repeated clockRecheckIn later, up to
// clockRechecks times in a row.
const (
	clockReads    = 8
	clockTrustRTT = 250 * time.Millisecond
	clockRechecks = 5
)

// clockState is the daemon's clock bookkeeping.
type clockState struct {
	once sync.Once
	kick chan string // a check is wanted now, and why

	mu   sync.Mutex
	last time.Time // when the last check finished (the periodic one counts from it)
}

func (d *Daemon) clock() *clockState {
	d.clockCtl.once.Do(func() { d.clockCtl.kick = make(chan string, 1) })
	return &d.clockCtl
}

// clockKick asks the running clock loop for a check now.
func (d *Daemon) clockKick(reason string) {
	select {
	case d.clock().kick <- reason:
	default:
	}
}

// clockDue reports whether the periodic check is due at now; when it is, the next one
// counts from now (and again from the check's end), so a slow check is not asked twice.
func (c *clockState) clockDue(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.IsZero() {
		c.last = now // the session's own check is on its way
	}
	if now.Sub(c.last) < clockEvery {
		return false
	}
	c.last = now
	return true
}

// clockLoop runs the clock checks of one agent session (a follower in runSession) that
// come after greet's: whenever it is kicked (by the heartbeat: periodic, host sleep,
// stall), and again clockRecheckIn after a check that could not trust its reading.
func (d *Daemon) clockLoop(ctx context.Context, agent *agentClient) error {
	c := d.clock()
	var recheck <-chan time.Time
	rechecks := 0
	for {
		var reason string
		select {
		case <-ctx.Done():
			return nil
		case <-agent.done():
			return nil
		case reason = <-c.kick:
		case <-recheck:
			reason = clockRecheck
		}
		recheck = nil
		if paused, _ := d.idle().t.paused(); paused {
			continue // the resume sets the clock
		}
		if d.syncClockWith(ctx, agent, reason, clockCallBound) {
			rechecks = 0
		} else if rechecks++; rechecks <= clockRechecks {
			recheck = time.After(clockRecheckIn)
		}
	}
}

// hostSlept reports whether the wall clock advanced more than jump beyond the monotonic
// clock over the same interval (time.Now values carry both readings: Sub uses the
// monotonic one, Round(0) strips it). The monotonic clock stands still while the host
// sleeps; the wall clock does not. A wall clock set back counts too.
func hostSlept(mono, wall, jump time.Duration) bool {
	diff := wall - mono
	return diff > jump || diff < -jump
}

// syncClock checks the clock over the current session, if there is one.
func (d *Daemon) syncClock(ctx context.Context, reason string, bound time.Duration) {
	d.mu.Lock()
	agent := d.agent
	d.mu.Unlock()
	if agent == nil || agent.closed() {
		return
	}
	d.syncClockWith(ctx, agent, reason, bound)
}

// syncClockWith checks the guest clock within bound and records the result: it reads the
// clock (clockSample) until a round trip is short enough to trust, and corrects the offset
// of the best reading when that offset is more than the reading's uncertainty. It reports
// whether the check is settled: false when no reading could be trusted (the caller checks
// again soon) or the check failed.
func (d *Daemon) syncClockWith(ctx context.Context, agent *agentClient, reason string, bound time.Duration) bool {
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	st := &api.Clock{Reason: reason, Action: proto.ClockNone}
	best, err := d.readClock(cctx, agent, st)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return false
		}
		st.Error = err.Error()
	case best == nil:
		// An agent without TypeClockRead: its clock is set as at boot.
		_, err = agent.call(cctx, proto.Request{Type: proto.TypeTime, TimeUnixNano: time.Now().UnixNano()})
		if err != nil {
			st.Error = err.Error()
		}
		st.Action = proto.ClockStep
	default:
		st.Offset, st.Uncertainty = best.offset, best.rtt/2
		// An offset within the reading's uncertainty may be none at all: leave it.
		if (best.offset > st.Uncertainty || best.offset < -st.Uncertainty) && proto.ClockAction(int64(best.offset)) != proto.ClockNone {
			resp, err := agent.call(cctx, proto.Request{Type: proto.TypeClockAdjust, ClockAdjustNanos: -int64(best.offset)})
			if err != nil {
				st.Error = err.Error()
			} else if resp.Clock != nil {
				st.Action = resp.Clock.Action
			}
		}
	}
	if st.Error != "" {
		d.log.Warn("failed to check the guest clock", "reason", reason, "err", st.Error)
	} else if st.Action != proto.ClockNone || reason != clockPeriodic {
		d.log.Info("guest clock checked", "reason", reason, "offset", st.Offset, "uncertainty", st.Uncertainty, "reads", st.Reads, "action", st.Action)
	}
	st.CheckedAt = time.Now()
	c := d.clock()
	c.mu.Lock()
	c.last = st.CheckedAt
	c.mu.Unlock()
	d.mu.Lock()
	d.status.Clock = st
	d.mu.Unlock()
	return st.Error == "" && st.Uncertainty < clockTrustRTT/2
}

// clockSample is one reading of the guest clock: its offset (guest minus host, at the
// middle of the round trip) is right to within half the round trip.
type clockSample struct {
	offset, rtt time.Duration
}

// readClock reads the guest clock until a round trip is under clockTrustRTT, up to
// clockReads times, and returns the reading with the shortest round trip (nil for an
// agent that has no TypeClockRead). st.Reads counts the round trips.
func (d *Daemon) readClock(ctx context.Context, agent *agentClient, st *api.Clock) (*clockSample, error) {
	var best *clockSample
	for st.Reads < clockReads {
		if st.Reads > 0 {
			select {
			case <-ctx.Done():
				return best, nil
			case <-time.After(clockRetry):
			}
		}
		start := time.Now()
		resp, err := agent.call(ctx, proto.Request{Type: proto.TypeClockRead})
		rtt := time.Since(start)
		st.Reads++
		switch {
		case proto.IsUnknownType(err):
			return nil, nil
		case err != nil && best != nil && ctx.Err() != nil:
			return best, nil // out of time: the best reading so far
		case err != nil:
			return nil, err
		case resp.Clock == nil || resp.Clock.GuestUnixNano == 0:
			return nil, errors.New("the agent answered a clock read without its time")
		}
		// The host's wall clock at the middle of the round trip (Round(0): wall reading).
		mid := start.Round(0).Add(rtt / 2)
		s := &clockSample{offset: time.Unix(0, resp.Clock.GuestUnixNano).Sub(mid), rtt: rtt}
		if best == nil || s.rtt < best.rtt {
			best = s
		}
		if best.rtt < clockTrustRTT {
			break
		}
	}
	return best, nil
}
