package gui

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/store"
)

// Starter starts the instance's daemon and returns once it runs (or failed to start).
type Starter func(ctx context.Context, name string) error

// Options configure a Controller.
type Options struct {
	Instance string // instance name; store.DefaultName when empty
	// Start starts the instance; BerthStarter("berth") when nil.
	Start Starter
	// Notify shows a system notification (an error the user should see even with the
	// window closed). Nil drops them.
	Notify func(title, body string)
	// Changed is called (from any goroutine) after the snapshot changed.
	Changed func()
	Log     *slog.Logger
	// Reconnect backoff while no daemon answers; 250ms to 10s when zero. The instance
	// directory is watched too, so a daemon started elsewhere is seen at once.
	MinBackoff, MaxBackoff time.Duration
}

// Controller is the tray's brain: it follows the daemon's event stream (reconnecting
// with backoff while none runs), follows the engine's container events while the
// instance is up, and runs the menu's actions. It has no fyne dependency.
type Controller struct {
	inst *store.Instance
	opts Options
	log  *slog.Logger
	born time.Time // events before this are history, never notified

	wake chan struct{}

	mu            sync.Mutex
	snap          Snapshot
	engineSock    string
	engineCancel  context.CancelFunc
	engine        *Engine
	diskWarned    string // identity of the daemon run warned about its disk; "" once re-armed
	silent        int    // failed status reads in a row from a daemon that holds the lock
	actionRunning bool
}

// NewController returns a controller for one instance; call Run to start following it.
func NewController(opts Options) (*Controller, error) {
	if opts.Instance == "" {
		opts.Instance = store.DefaultName
	}
	if opts.Start == nil {
		opts.Start = BerthStarter("berth", nil)
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	inst, err := instancePaths(opts.Instance)
	if err != nil {
		return nil, err
	}
	c := &Controller{inst: inst, opts: opts, log: opts.Log, born: time.Now(), wake: make(chan struct{}, 1)}
	c.snap = Snapshot{Instance: inst.Name, State: api.StateStopped, Context: dockerctx.Name(inst.Name)}
	return c, nil
}

// instancePaths locates an instance whether or not it exists yet (the tray can create the
// default one with its first start).
func instancePaths(name string) (*store.Instance, error) {
	inst, err := store.Open(name)
	if err == nil {
		return inst, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	root, rerr := store.Root()
	if rerr != nil {
		return nil, rerr
	}
	return &store.Instance{Name: name, Dir: filepath.Join(root, name)}, nil
}

// Instance returns the instance's directory handle.
func (c *Controller) Instance() *store.Instance { return c.inst }

// Snapshot returns a copy of the current state.
func (c *Controller) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.snap
	s.Containers = append([]Container(nil), c.snap.Containers...)
	return s
}

func (c *Controller) update(fn func(s *Snapshot)) {
	c.mu.Lock()
	fn(&c.snap)
	c.snap.Updated = time.Now()
	c.mu.Unlock()
	if c.opts.Changed != nil {
		c.opts.Changed()
	}
}

func (c *Controller) notify(title, body string) {
	c.log.Info("notification", "title", title, "body", body)
	if c.opts.Notify != nil {
		c.opts.Notify(title, body)
	}
}

// Wake makes a waiting reconnect try at once.
func (c *Controller) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
