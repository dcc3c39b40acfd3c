package guestagent

import (
	"context"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// defaultNapAfter is how long the engine must have had nothing to do before it naps.
const defaultNapAfter = 30 * time.Second

// EngineNap stops the engine's daemons (SIGSTOP to dockerd and containerd) while nothing
// can need them, and continues them before anything reaches them. Idle, each daemon wakes
// the guest about twenty times a minute for its own timers; under emulation those wake-ups
// are most of an idle VM's cost beyond a bare one (docs/resources.md).
//
// The engine naps once it has run for the nap delay with no container running (a paused
// or restarting one counts as running: `docker ps` lists it), no hold (an open docker
// stream from the host, a `berth shell` or exec session, the agent's own calls), and no
// swarm membership (a node must answer its managers). Only a client can change any of
// that, and every client holds first: Hold continues the daemons before it returns.
// Stopping a daemon in any other way (Engine.Stop, a restart) continues it first.
type EngineNap struct {
	// Signal sends sig to the engine's daemons (Engine.signalDaemons).
	Signal func(sig syscall.Signal)
	// Swarm reports whether the engine is a swarm node (then it never naps).
	Swarm func(ctx context.Context) (bool, error)
	// After is the nap delay; zero is defaultNapAfter.
	After time.Duration
	Log   *slog.Logger

	mu       sync.Mutex
	holds    int
	running  int  // containers; < 0 unknown
	engineUp bool // the engine is EngineRunning
	since    time.Time
	napping  bool
	// inSwarm: the last look found a swarm node. Only a client can change that, so the
	// engine is not asked again until a hold has ended.
	inSwarm bool
	changed chan struct{} // a hold ended
	woke    chan struct{} // closed when a nap ends; nil while awake
	tries   int           // tryNap calls (tests)
}

// Hold continues a napping engine and keeps it from napping until the returned release
// is called. A nil EngineNap holds nothing.
func (n *EngineNap) Hold(why string) (release func()) {
	if n == nil {
		return func() {}
	}
	n.mu.Lock()
	n.holds++
	if n.napping {
		n.wake(why)
	}
	n.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			n.holds--
			n.since = time.Now()
			n.inSwarm = false
			n.mu.Unlock()
			n.poke()
		})
	}
}

// Asleep returns, while the engine naps, a channel that is closed when it wakes, and nil
// while it is awake. Nothing writes to the data disk during a nap, so a watcher of what
// only the engine changes waits on it instead of waking the guest to look.
func (n *EngineNap) Asleep() <-chan struct{} {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.woke
}

// Napping reports whether the engine's daemons are stopped now.
func (n *EngineNap) Napping() bool {
	if n == nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.napping
}

func (n *EngineNap) init() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.changed == nil {
		n.changed = make(chan struct{}, 1)
	}
	n.running = -1
	n.since = time.Now()
}

func (n *EngineNap) poke() {
	n.mu.Lock()
	ch := n.changed
	n.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// wake continues the daemons; n.mu is held.
func (n *EngineNap) wake(why string) {
	n.Signal(sigCont)
	n.napping = false
	close(n.woke)
	n.woke = nil
	n.since = time.Now()
	n.Log.Info("engine woken", "by", why)
}

// idle reports whether the engine may nap at now; n.mu is held.
func (n *EngineNap) idle(now time.Time) bool {
	return !n.napping && n.engineUp && n.holds == 0 && n.running == 0 && now.Sub(n.since) >= n.after()
}

func (n *EngineNap) after() time.Duration { return orDefault(n.After, defaultNapAfter) }

// Run naps the engine whenever it is idle, following its state (engine) and its running
// containers (running), until ctx ends; it leaves the engine awake.
func (n *EngineNap) Run(ctx context.Context, engine <-chan proto.Event, running <-chan proto.Activity) {
	n.init()
	t := time.NewTimer(n.after())
	defer t.Stop()
	defer func() {
		n.mu.Lock()
		if n.napping {
			n.wake("the agent stopping")
		}
		n.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-engine:
			n.mu.Lock()
			n.engineUp = ev.Engine == proto.EngineRunning
			n.since = time.Now()
			if n.napping && !n.engineUp {
				// A daemon went (killed, or stopped by the engine): the other one runs on.
				n.wake("engine state " + string(ev.Engine))
			}
			n.mu.Unlock()
		case a := <-running:
			n.mu.Lock()
			if a.Containers != n.running {
				n.running = a.Containers
				n.since = time.Now()
			}
			n.mu.Unlock()
		case <-n.changed:
		case <-t.C:
			n.tryNap(ctx)
		}
		// Armed only while the delay alone stands between the engine and a nap: everything
		// else that changes arrives on a channel above.
		t.Stop()
		n.mu.Lock()
		if !n.napping && n.engineUp && n.holds == 0 && n.running == 0 && !n.inSwarm {
			t.Reset(max(time.Until(n.since.Add(n.after())), 10*time.Millisecond))
		}
		n.mu.Unlock()
	}
}

// tryNap stops the daemons if the engine is idle and in no swarm.
func (n *EngineNap) tryNap(ctx context.Context) {
	n.mu.Lock()
	n.tries++
	ok := n.idle(time.Now()) && !n.inSwarm
	n.mu.Unlock()
	if !ok {
		return
	}
	// Asked outside n.mu: the engine answers while awake, and a hold taken meanwhile is
	// seen below.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	swarm, err := n.Swarm(cctx)
	cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case err != nil:
		n.Log.Warn("engine stays awake: failed to ask it for its swarm state", "err", err)
		n.since = time.Now() // look again after another delay
		return
	case swarm:
		n.inSwarm = true
		return
	}
	if !n.idle(time.Now()) {
		return
	}
	n.Signal(sigStop)
	n.napping = true
	n.woke = make(chan struct{})
	n.Log.Info("engine napping: no container, no client", "idle", n.after())
}
