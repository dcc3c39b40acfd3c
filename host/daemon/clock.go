package daemon

import (
	"context"
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

	mu  sync.Mutex
	rtt time.Duration // the last check's round trip: half of it is sent ahead
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

// clockLoop checks the guest clock for one agent session (a follower in runSession).
func (d *Daemon) clockLoop(ctx context.Context, agent *agentClient) error {
	c := d.clock()
	d.syncClockWith(ctx, agent, clockSession, clockCallBound)
	last := time.Now()
	prev := time.Now()
	t := time.NewTicker(clockTick)
	defer t.Stop()
	for {
		reason := ""
		select {
		case <-ctx.Done():
			return nil
		case <-agent.done():
			return nil
		case reason = <-c.kick:
		case now := <-t.C:
			if hostSlept(now.Sub(prev), now.Round(0).Sub(prev.Round(0)), clockJump) {
				reason = clockHostSleep
			} else if now.Sub(last) >= clockEvery {
				reason = clockPeriodic
			}
			prev = now
		}
		if reason == "" {
			continue
		}
		if paused, _ := d.idle().t.paused(); paused {
			continue // the resume sets the clock
		}
		d.syncClockWith(ctx, agent, reason, clockCallBound)
		last = time.Now()
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

// syncClockWith sends the host's time, ahead by half the last round trip (the request's
// expected one-way delay), and records what the agent measured and did.
func (d *Daemon) syncClockWith(ctx context.Context, agent *agentClient, reason string, bound time.Duration) {
	c := d.clock()
	c.mu.Lock()
	ahead := c.rtt / 2
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	start := time.Now()
	resp, err := agent.call(cctx, proto.Request{Type: proto.TypeClock, TimeUnixNano: start.Add(ahead).UnixNano()})
	rtt := time.Since(start)
	if err != nil && strings.Contains(err.Error(), "unknown request type") {
		// An agent without TypeClock: set the time as at boot.
		_, err = agent.call(cctx, proto.Request{Type: proto.TypeTime, TimeUnixNano: time.Now().UnixNano()})
		if err == nil {
			return
		}
	}
	st := &api.Clock{CheckedAt: time.Now(), Reason: reason}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		st.Error = err.Error()
		d.log.Warn("failed to check the guest clock", "reason", reason, "err", err)
	}
	if resp.Clock != nil {
		st.Offset, st.Action = time.Duration(resp.Clock.OffsetNanos), resp.Clock.Action
		if st.Action != proto.ClockNone || reason != clockPeriodic {
			d.log.Info("guest clock checked", "reason", reason, "offset", st.Offset, "action", st.Action, "rtt", rtt)
		}
		// A round trip of a VM that stood still says nothing about the channel's delay,
		// and the time it was sent was stale when the guest got it: check again at once.
		if err == nil && rtt < stallThreshold {
			c.mu.Lock()
			c.rtt = rtt
			c.mu.Unlock()
		} else if err == nil {
			d.clockKick(clockStall)
		}
	}
	d.mu.Lock()
	d.status.Clock = st
	d.mu.Unlock()
}
