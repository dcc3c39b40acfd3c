package daemon

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// Guest clock (docs/resources.md). The agent sets the clock from the host at every
// session; from then on hostd checks it every clockEvery, right after a resume, when the
// host's wall clock jumped against its monotonic clock (the host slept: the guest's clock
// stood still meanwhile) and when a ping shows the VM stood still (its process was
// stopped). The agent measures the offset and steps or slews (proto.ClockAction).
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
)

// Clock timing; variables for tests.
var (
	clockEvery     = 60 * time.Second
	clockTick      = 5 * time.Second  // how often the host's clocks are compared
	clockJump      = time.Second      // a wall-clock jump beyond the monotonic one that counts as a sleep
	clockCallBound = 10 * time.Second // one check
)

// clockState is the daemon's clock bookkeeping.
type clockState struct {
	once sync.Once
	kick chan string // a check is wanted now, and why

	mu   sync.Mutex
	rtt  time.Duration // the last check's round trip: half of it is sent ahead
	last time.Time     // when clockLoop last finished a check (the periodic one counts from it)
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

// clockLoop checks the guest clock for one agent session (a follower in runSession): once
// at its start, then whenever it is kicked (by the heartbeat: periodic, host sleep,
// stall). It has no timer of its own.
func (d *Daemon) clockLoop(ctx context.Context, agent *agentClient) error {
	c := d.clock()
	done := func() {
		c.mu.Lock()
		c.last = time.Now()
		c.mu.Unlock()
	}
	d.syncClockWith(ctx, agent, clockSession, clockCallBound)
	done()
	for {
		var reason string
		select {
		case <-ctx.Done():
			return nil
		case <-agent.done():
			return nil
		case reason = <-c.kick:
		}
		if paused, _ := d.idle().t.paused(); paused {
			continue // the resume sets the clock
		}
		d.syncClockWith(ctx, agent, reason, clockCallBound)
		done()
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

// syncClockWith checks the guest clock and records the result. One round sends the host's
// time, ahead by half the last trusted round trip (the request's expected one-way delay);
// the agent measures its offset and corrects it. A round whose round trip was long (the
// guest was busy, or stood still: the time it got was stale by up to that long) or that
// had to step the clock is followed at once by another, which measures what is left and
// corrects that, up to clockRounds rounds within bound in all.
func (d *Daemon) syncClockWith(ctx context.Context, agent *agentClient, reason string, bound time.Duration) {
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	st := &api.Clock{Reason: reason}
	for st.Rounds < clockRounds {
		res, rtt, err := d.clockRound(cctx, agent)
		st.Rounds++
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.Error = err.Error()
			d.log.Warn("failed to check the guest clock", "reason", reason, "round", st.Rounds, "err", err)
			break
		}
		if res == nil {
			break // an agent without TypeClock: its time was set as at boot
		}
		off := time.Duration(res.OffsetNanos)
		if st.Rounds == 1 {
			st.Offset, st.Action = off, res.Action
		} else {
			st.Residual = off
		}
		if res.Action != proto.ClockNone || reason != clockPeriodic {
			d.log.Info("guest clock checked", "reason", reason, "round", st.Rounds, "offset", off, "action", res.Action, "rtt", rtt)
		}
		if res.Action != proto.ClockStep && rtt < clockTrustRTT {
			break
		}
	}
	st.CheckedAt = time.Now()
	d.mu.Lock()
	d.status.Clock = st
	d.mu.Unlock()
}

// Clock rounds: at most clockRounds per check; a round trip under clockTrustRTT is the
// channel's own delay (under TCG a few ms to tens of ms) and is trusted.
const (
	clockRounds   = 4
	clockTrustRTT = 250 * time.Millisecond
)

// clockRound is one TypeClock round trip. It returns a nil result for an agent that has no
// TypeClock (it gets TypeTime, as at boot).
func (d *Daemon) clockRound(ctx context.Context, agent *agentClient) (*proto.ClockResult, time.Duration, error) {
	c := d.clock()
	c.mu.Lock()
	ahead := c.rtt / 2
	c.mu.Unlock()
	start := time.Now()
	resp, err := agent.call(ctx, proto.Request{Type: proto.TypeClock, TimeUnixNano: start.Add(ahead).UnixNano()})
	rtt := time.Since(start)
	if err != nil && strings.Contains(err.Error(), "unknown request type") {
		_, err = agent.call(ctx, proto.Request{Type: proto.TypeTime, TimeUnixNano: time.Now().UnixNano()})
		return nil, rtt, err
	}
	if err != nil {
		return nil, rtt, err
	}
	if resp.Clock == nil {
		return nil, rtt, errors.New("the agent answered a clock request without a result")
	}
	if rtt < clockTrustRTT {
		c.mu.Lock()
		c.rtt = rtt
		c.mu.Unlock()
	}
	return resp.Clock, rtt, nil
}
