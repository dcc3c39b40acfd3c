package daemon

// The agent session: connecting, supervising, reconnecting, and the engine's events.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/vm"
)

// greet checks a new agent session: its protocol, and the guest clock.
func (d *Daemon) greet(ctx context.Context, agent *agentClient) (*proto.Info, error) {
	info, err := agent.info(ctx)
	if err != nil {
		return nil, err
	}
	if info.ProtocolVersion != proto.Version {
		return nil, fmt.Errorf("guest agent speaks protocol %d, this berth speaks %d: reinstall berth and its guest image together (berth install)", info.ProtocolVersion, proto.Version)
	}
	if !d.syncClockWith(ctx, agent, clockSession, clockCallBound) {
		d.clockKick(clockRecheck) // the session's clock loop tries again
	}
	return info, nil
}

// setAgent makes agent the session every new stream goes to, and wakes liveAgent waiters.
func (d *Daemon) setAgent(agent *agentClient) {
	d.mu.Lock()
	d.agent = agent
	close(d.agentSet)
	d.agentSet = make(chan struct{})
	d.mu.Unlock()
}

// liveAgent returns the agent session, waiting while the host reconnects to a restarted
// agent, until ctx ends.
func (d *Daemon) liveAgent(ctx context.Context) (*agentClient, error) {
	for {
		d.mu.Lock()
		agent, changed := d.agent, d.agentSet
		d.mu.Unlock()
		if agent != nil && !agent.closed() {
			return agent, nil
		}
		select {
		case <-changed:
		case <-d.vmDone:
			return nil, fmt.Errorf("instance %q stopped", d.inst.Name)
		case <-ctx.Done():
			return nil, fmt.Errorf("the guest agent is not reachable: %w", ctx.Err())
		}
	}
}

// superviseAgent runs the agent's sessions for the life of the run: the streams that mirror
// the guest (engine state, ports, disk usage, change notification) are opened on each
// session, and when a session ends (the agent's serve process restarted, or stopped
// answering pings) the host reconnects with backoff and opens them all again, so the
// guest's full state is re-synced, never only what changed after. up gets the first
// engine readiness.
func (d *Daemon) superviseAgent(ctx context.Context, drv vm.Driver, agent *agentClient, up chan<- error) {
	for {
		d.runSession(ctx, agent, up)
		up = nil
		agent.close()
		if ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		state := d.status.State
		d.mu.Unlock()
		if state == api.StateRunning {
			d.setState(api.StateDegraded, "lost the guest agent; reconnecting", nil)
		}
		if agent = d.reconnect(ctx, drv); agent == nil {
			return
		}
	}
}

// runSession runs one session's followers until the session or ctx ends, and returns
// once every one of them has.
func (d *Daemon) runSession(ctx context.Context, agent *agentClient, up chan<- error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	follow := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(sctx); err != nil && sctx.Err() == nil && !agent.closed() {
				d.log.Warn("agent stream ended", "stream", name, "err", err)
			}
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); d.keepalive(sctx, agent) }()
	go func() { defer wg.Done(); d.followEngine(sctx, agent, up) }()
	follow(proto.TypePorts, func(ctx context.Context) error { return d.ports.follow(ctx, agent) })
	follow(proto.TypeNotify, func(ctx context.Context) error { return d.shares.notify.serve(ctx, agent) })
	follow(proto.TypeActivity, func(ctx context.Context) error { return d.followActivity(ctx, agent) })
	follow("idle", func(ctx context.Context) error { return d.idleLoop(ctx, agent) })
	follow("clock", func(ctx context.Context) error { return d.clockLoop(ctx, agent) })
	follow(proto.TypeDisk, func(ctx context.Context) error {
		select {
		case <-d.running:
		case <-ctx.Done():
			return nil
		}
		return d.followDisk(ctx, agent)
	})
	select {
	case <-agent.done():
	case <-ctx.Done():
	}
	cancel()
	wg.Wait()
}

// reconnect dials the agent until a session is up (nil when ctx ended first).
func (d *Daemon) reconnect(ctx context.Context, drv vm.Driver) *agentClient {
	backoff := 100 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		agent, err := dialAgent(actx, drv, d.log.With("component", "agent"))
		var info *proto.Info
		if err == nil {
			if info, err = d.greet(actx, agent); err != nil {
				agent.close()
			}
		}
		cancel()
		if err == nil {
			d.mu.Lock()
			d.status.Guest = apiGuest(info)
			d.mu.Unlock()
			d.setAgent(agent)
			d.log.Info("reconnected to the guest agent", "agent", info.AgentVersion)
			return agent
		}
		d.log.Warn("failed to reconnect to the guest agent", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// followEngine mirrors the agent's engine events into the instance state. The first
// "running" is reported on up (nil on later sessions: the engine was up before).
func (d *Daemon) followEngine(ctx context.Context, agent *agentClient, up chan<- error) {
	reported := up == nil
	report := func(err error) {
		if !reported {
			reported = true
			up <- err
		}
	}
	st, _, err := agent.open(ctx, proto.Request{Type: proto.TypeEvents})
	if err != nil {
		report(err)
		return
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()); st.Close() })
	defer stop()
	err = proto.ReadLines(st, func(line []byte, _ error) {
		var ev proto.Event
		if json.Unmarshal(line, &ev) != nil {
			return
		}
		if ev.Message != "" {
			d.log.Info("engine", "state", ev.Engine, "msg", ev.Message)
		}
		d.mu.Lock()
		if d.status.Guest != nil {
			d.status.Guest.Engine = string(ev.Engine)
		}
		state := d.status.State
		d.mu.Unlock()
		switch ev.Engine {
		case proto.EngineRunning:
			if !reported {
				report(nil)
			} else if state == api.StateDegraded {
				d.setState(api.StateRunning, "engine recovered", nil)
			}
		case proto.EngineFailed:
			if !reported {
				report(errors.New(ev.Message))
			} else if state == api.StateRunning {
				d.setState(api.StateDegraded, "", errors.New(ev.Message))
			}
		case proto.EngineStarting:
			if reported && state == api.StateRunning {
				d.setState(api.StateDegraded, ev.Message, nil)
			}
		}
	})
	report(fmt.Errorf("engine event stream ended: %v", err))
}
