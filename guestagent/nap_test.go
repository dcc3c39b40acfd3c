package guestagent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// napRig runs an EngineNap against a recorded signal and a settable swarm answer.
type napRig struct {
	t        *testing.T
	nap      *EngineNap
	engine   chan proto.Event
	running  chan proto.Activity
	sigs     chan syscall.Signal
	mu       sync.Mutex
	swarm    bool
	swarmErr error
	cancel   context.CancelFunc
	done     chan struct{}
}

const napTestDelay = 50 * time.Millisecond

func newNapRig(t *testing.T) *napRig {
	r := &napRig{t: t, engine: make(chan proto.Event, 1), running: make(chan proto.Activity, 1),
		sigs: make(chan syscall.Signal, 16), done: make(chan struct{})}
	r.nap = &EngineNap{
		Signal: func(sig syscall.Signal) { r.sigs <- sig },
		Swarm: func(context.Context) (bool, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.swarm, r.swarmErr
		},
		After: napTestDelay,
		Log:   slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); r.nap.Run(ctx, r.engine, r.running) }()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *napRig) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		r.t.Fatal("EngineNap.Run did not end")
	}
}

// expect waits for the next signal and checks it.
func (r *napRig) expect(want syscall.Signal) {
	r.t.Helper()
	select {
	case got := <-r.sigs:
		if got != want {
			r.t.Fatalf("signal %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no %v within 5 s", want)
	}
}

// none checks that no signal comes within a few nap delays.
func (r *napRig) none(why string) {
	r.t.Helper()
	select {
	case got := <-r.sigs:
		r.t.Fatalf("%s: signal %v, want none", why, got)
	case <-time.After(6 * napTestDelay):
	}
}

func (r *napRig) idleEngine() {
	r.engine <- proto.Event{Engine: proto.EngineRunning}
	r.running <- proto.Activity{Containers: 0}
}

func TestEngineNapsWhenIdleAndWakesForAClient(t *testing.T) {
	r := newNapRig(t)
	r.idleEngine()
	r.expect(sigStop)
	if !r.nap.Napping() {
		t.Fatal("Napping() = false after SIGSTOP")
	}
	woke := r.nap.Asleep()
	if woke == nil {
		t.Fatal("Asleep() = nil while napping")
	}
	release := r.nap.Hold("test client")
	r.expect(sigCont) // before Hold returned: the signal is sent under its lock
	if r.nap.Napping() {
		t.Fatal("Napping() = true while held")
	}
	select {
	case <-woke:
	default:
		t.Fatal("Asleep()'s channel still open after the engine woke")
	}
	if r.nap.Asleep() != nil {
		t.Fatal("Asleep() != nil while awake")
	}
	r.none("while held")
	release()
	release() // twice is once
	r.expect(sigStop)
	// A hold that ends restarts the delay: it naps no sooner than the delay after it.
	release = r.nap.Hold("another")
	r.expect(sigCont)
	t0 := time.Now()
	release()
	r.expect(sigStop)
	if d := time.Since(t0); d < napTestDelay {
		t.Errorf("napped %s after the last hold ended, want >= %s", d, napTestDelay)
	}
}

func TestEngineStaysAwake(t *testing.T) {
	t.Run("containers running", func(t *testing.T) {
		r := newNapRig(t)
		r.engine <- proto.Event{Engine: proto.EngineRunning}
		r.running <- proto.Activity{Containers: 1}
		r.none("a container runs")
		r.running <- proto.Activity{Containers: 0}
		r.expect(sigStop)
	})
	t.Run("count unknown", func(t *testing.T) {
		r := newNapRig(t)
		r.engine <- proto.Event{Engine: proto.EngineRunning}
		r.running <- proto.Activity{Containers: -1}
		r.none("the engine could not be asked")
	})
	t.Run("engine starting", func(t *testing.T) {
		r := newNapRig(t)
		r.engine <- proto.Event{Engine: proto.EngineStarting}
		r.running <- proto.Activity{Containers: 0}
		r.none("the engine is starting")
	})
	t.Run("swarm node", func(t *testing.T) {
		r := newNapRig(t)
		r.swarm = true
		r.idleEngine()
		r.none("a swarm node")
		// It left the swarm: asked again once a client was there.
		r.mu.Lock()
		r.swarm = false
		r.mu.Unlock()
		r.none("not asked again without a client")
		r.nap.Hold("docker swarm leave")()
		r.expect(sigStop)
	})
	t.Run("swarm unknown", func(t *testing.T) {
		r := newNapRig(t)
		r.swarmErr = errors.New("no answer")
		r.idleEngine()
		r.none("the swarm state is unknown")
		r.mu.Lock()
		r.swarmErr = nil
		r.mu.Unlock()
		r.expect(sigStop)
	})
	t.Run("held", func(t *testing.T) {
		r := newNapRig(t)
		release := r.nap.Hold("a docker logs -f")
		defer release()
		r.idleEngine()
		r.none("a client holds")
	})
}

// TestEngineNapDoesNotSpin: while something keeps the engine awake the nap's loop waits
// for a change instead of looking again and again.
func TestEngineNapDoesNotSpin(t *testing.T) {
	for _, c := range []struct {
		what  string
		setup func(r *napRig)
	}{
		{"containers running", func(r *napRig) {
			r.engine <- proto.Event{Engine: proto.EngineRunning}
			r.running <- proto.Activity{Containers: 2}
		}},
		{"engine starting", func(r *napRig) { r.engine <- proto.Event{Engine: proto.EngineStarting} }},
		{"held", func(r *napRig) { r.nap.Hold("test"); r.idleEngine() }},
		{"swarm node", func(r *napRig) { r.swarm = true; r.idleEngine() }},
	} {
		t.Run(c.what, func(t *testing.T) {
			r := newNapRig(t)
			c.setup(r)
			time.Sleep(20 * napTestDelay)
			r.nap.mu.Lock()
			tries := r.nap.tries
			r.nap.mu.Unlock()
			if tries > 2 {
				t.Errorf("%d looks in %s, want at most 2", tries, 20*napTestDelay)
			}
		})
	}
}

func TestEngineWokenWhenItChangesOrTheAgentEnds(t *testing.T) {
	r := newNapRig(t)
	r.idleEngine()
	r.expect(sigStop)
	r.engine <- proto.Event{Engine: proto.EngineStarting} // a daemon died: the other runs on
	r.expect(sigCont)
	r.engine <- proto.Event{Engine: proto.EngineRunning}
	r.expect(sigStop)
	r.stop()
	r.expect(sigCont)
}

func TestNilEngineNapHoldsNothing(t *testing.T) {
	var n *EngineNap
	n.Hold("x")()
	if n.Napping() {
		t.Fatal("a nil EngineNap naps")
	}
}
