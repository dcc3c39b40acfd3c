package daemon

// State, phases and the event stream clients subscribe to.

import (
	"slices"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// phaseStart announces a phase.
func (d *Daemon) phaseStart(phase, msg string) {
	d.mu.Lock()
	d.status.Phase = phase
	d.mu.Unlock()
	d.publish(api.Event{State: api.StateStarting, Phase: phase, Message: msg})
}

// phaseDone records and announces when a phase completed.
func (d *Daemon) phaseDone(phase, msg string) {
	at := time.Since(d.startedAt)
	d.mu.Lock()
	d.status.Phases = append(d.status.Phases, api.PhaseTiming{Phase: phase, At: at})
	d.mu.Unlock()
	d.log.Info("phase done", "phase", phase, "after", at.Round(time.Millisecond))
	d.publish(api.Event{State: api.StateStarting, Phase: phase, Message: msg, Done: true})
}

func (d *Daemon) setState(state, msg string, err error) {
	d.mu.Lock()
	d.status.State = state
	if state != api.StateStarting {
		d.status.Phase = ""
	}
	d.status.Error = errString(err)
	d.mu.Unlock()
	d.publish(api.Event{State: state, Message: msg, Error: errString(err)})
}

func (d *Daemon) publish(ev api.Event) {
	ev.Time = time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	// A run has a few dozen events at most (phases and state changes). Disk events come
	// for as long as the instance runs: only the latest stays, as the current usage.
	if ev.Type == api.EventDisk {
		d.history = slices.DeleteFunc(d.history, func(e api.Event) bool { return e.Type == api.EventDisk })
	}
	if len(d.history) < 1000 {
		d.history = append(d.history, ev)
	}
	d.events.Publish(ev)
}

// Status returns a snapshot.
func (d *Daemon) Status() api.Status {
	d.mu.Lock()
	pm := d.ports
	d.mu.Unlock()
	var ports []api.PortForward
	if pm != nil {
		// Outside d.mu: the port manager takes its own lock and then publishes events.
		ports = pm.list()
	}
	idle := d.idleStatus()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.status
	s.Idle = idle
	s.Ports = ports
	s.Hostd = selfStats()
	s.Phases = append([]api.PhaseTiming(nil), d.status.Phases...)
	if d.status.Guest != nil {
		g := *d.status.Guest
		s.Guest = &g
	}
	return s
}

// subscribe returns every event of this run so far, then the new ones, so a client that
// connects late still sees each phase.
func (d *Daemon) subscribe() (<-chan api.Event, func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events.Subscribe(64, d.history...)
}
