package guestagent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
)

// containerCount is the number of running containers the engine listed last (PortWatcher
// re-lists on every container event), for the host's idle pause (TypeActivity).
type containerCount struct {
	mu    sync.Mutex
	n     int
	known bool
	subs  map[chan proto.Activity]struct{}
}

// set records n running containers; n < 0 means the engine could not be asked.
func (c *containerCount) set(n int) {
	if n < 0 {
		n = -1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.known && c.n == n {
		return
	}
	c.n, c.known = n, true
	for ch := range c.subs {
		// Only the latest count matters: replace an unread one.
		select {
		case <-ch:
		default:
		}
		ch <- proto.Activity{Containers: n}
	}
}

// subscribe returns a channel that gets the count now and after every change.
func (c *containerCount) subscribe() (<-chan proto.Activity, func()) {
	ch := make(chan proto.Activity, 1)
	c.mu.Lock()
	if c.subs == nil {
		c.subs = map[chan proto.Activity]struct{}{}
	}
	c.subs[ch] = struct{}{}
	n := c.n
	if !c.known {
		n = -1
	}
	ch <- proto.Activity{Containers: n}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// activity serves TypeActivity: the running-container count now and on every change.
// Without an engine (tests) there are no containers.
func (s *Server) activity(ctx context.Context, st *yamux.Stream) error {
	if err := reply(st, nil); err != nil {
		return err
	}
	if s.opts.Ports == nil {
		ch := make(chan proto.Activity, 1)
		ch <- proto.Activity{}
		return writeUpdates(ctx, st, ch)
	}
	ch, cancel := s.opts.Ports.running.subscribe()
	defer cancel()
	return writeUpdates(ctx, st, ch)
}

// activityCheck serves TypeActivityCheck: the engine's own count of running containers,
// asked now. Without an engine (tests) there are none.
func (s *Server) activityCheck(ctx context.Context, st *yamux.Stream) error {
	a := &proto.Activity{}
	if s.opts.Ports != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := s.opts.Ports.Recount(cctx)
		cancel()
		if err != nil {
			return reply(st, fmt.Errorf("failed to ask the engine for its containers: %w", err))
		}
		a.Containers = n
	}
	return proto.WriteJSONLine(st, proto.Response{Activity: a})
}

// clockAdjust serves TypeClockAdjust.
func (s *Server) clockAdjust(st *yamux.Stream, by time.Duration) error {
	action, err := s.opts.Clock.Adjust(by)
	r := proto.Response{Clock: &proto.ClockResult{Action: action}}
	if err != nil {
		r.Error = err.Error()
	} else if action != proto.ClockNone {
		s.log.Debug("guest clock corrected", "by", by, "action", action)
	}
	return proto.WriteJSONLine(st, r)
}
