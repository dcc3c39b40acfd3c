package gui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/fsnotify/fsnotify"
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

// Run follows the instance until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer c.stopEngine()
	watch := newDirWatch(c.inst.Dir)
	defer watch.close()
	backoff := c.opts.MinBackoff
	for ctx.Err() == nil {
		if c.follow(ctx) {
			backoff = c.opts.MinBackoff
		}
		if ctx.Err() != nil {
			return
		}
		watch.start()
		select {
		case <-ctx.Done():
		case <-c.wake:
		case <-watch.events:
		case <-time.After(backoff):
		}
		watch.stop()
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

// follow reads the daemon's status and then its event stream until it ends. It returns
// whether a daemon answered.
func (c *Controller) follow(ctx context.Context) bool {
	pid := c.inst.DaemonPID()
	if pid == 0 {
		c.setOffline()
		return false
	}
	client := instance.Client(c.inst)
	connectAt := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := client.Status(sctx)
	cancel()
	if err != nil {
		// A daemon binds its socket just after taking the lock, and closes it just before
		// exiting: only a daemon that stays silent is an error.
		c.mu.Lock()
		c.silent++
		silent := c.silent
		c.mu.Unlock()
		if silent >= 5 {
			c.update(func(s *Snapshot) {
				s.Daemon, s.State = false, api.StateError
				s.Error = fmt.Sprintf("the berth daemon (pid %d) does not answer: %v", pid, err)
			})
		}
		return false
	}
	c.mu.Lock()
	c.silent = 0
	c.mu.Unlock()
	c.applyStatus(st)

	err = client.Events(ctx, func(ev api.Event) bool {
		// The daemon replays its history to each new subscriber; the status just read
		// already reflects it, so only newer events change anything.
		if !ev.Time.After(connectAt) {
			return true
		}
		c.applyEvent(ctx, client, ev)
		return true
	})
	if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		c.log.Debug("event stream ended", "err", err)
	}
	return true
}

// applyStatus takes a full status from the daemon.
func (c *Controller) applyStatus(st api.Status) {
	c.update(func(s *Snapshot) {
		s.Daemon = true
		s.Status = st
		s.State, s.Phase, s.Error = st.State, st.Phase, st.Error
	})
	c.syncEngine(st)
	c.checkDisk(st)
}

func (c *Controller) applyEvent(ctx context.Context, client *api.Client, ev api.Event) {
	prev := c.Snapshot()
	c.update(func(s *Snapshot) {
		s.Daemon = ev.State != api.StateStopped && ev.State != api.StateError
		s.State, s.Phase = ev.State, ev.Phase
		if ev.State == api.StateError {
			s.Error = ev.Error
		} else if ev.State != prev.State {
			s.Error = ""
		}
	})
	switch {
	case ev.State == api.StateError:
		// The VM died or a start failed; the daemon exits after this.
		c.stopEngine()
		c.update(func(s *Snapshot) { s.Containers, s.EngineReady, s.EngineError = nil, false, "" })
		if prev.Busy == "" || prev.State != api.StateStarting {
			c.notify("berth: the VM stopped", firstNonEmpty(ev.Error, "the VM of "+c.inst.Name+" exited unexpectedly"))
		}
		return
	case ev.State == api.StateStopped || ev.State == api.StateStopping:
		c.stopEngine()
		c.update(func(s *Snapshot) { s.Containers, s.EngineReady, s.EngineError = nil, false, "" })
		return
	case ev.Type == api.EventDisk && ev.Disk != nil:
		c.applyDisk(*ev.Disk)
	case ev.Error != "":
		// A port that could not be forwarded, a share that did not mount: problems the
		// VM survives.
		title := "berth: problem"
		if strings.Contains(ev.Error, "port ") {
			title = "berth: port not forwarded"
		}
		c.notify(title, ev.Error)
	}
	if ev.State != prev.State || ev.Error != "" || ev.Phase != prev.Phase {
		// The status carries what events do not: the docker socket, the guest's disk,
		// the forwarded ports.
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := client.Status(sctx)
		cancel()
		if err == nil {
			c.update(func(s *Snapshot) { s.Status = st })
			c.syncEngine(st)
			c.checkDisk(st)
		}
	}
}

// setOffline shows the instance as stopped, with the last run's error if it failed.
func (c *Controller) setOffline() {
	c.stopEngine()
	var st api.Status
	if _, err := os.Stat(c.inst.Path(store.ConfigFile)); err == nil {
		st, _ = instance.Status(context.Background(), c.inst)
	} else {
		st = api.Status{Name: c.inst.Name, State: api.StateStopped}
	}
	switch st.State {
	case api.StateStarting, api.StateRunning, api.StateDegraded, api.StateStopping:
		// A daemon came up since follow looked: the next follow connects to it. Showing
		// its state now, without the daemon, would offer Start on a running instance.
		return
	}
	c.mu.Lock()
	c.silent = 0
	c.mu.Unlock()
	c.update(func(s *Snapshot) {
		s.Daemon = false
		s.Status = st
		s.Phase = ""
		s.Containers, s.EngineReady, s.EngineError = nil, false, ""
		if s.Busy == BusyStarting || s.Busy == BusyRestarting {
			return // the starter is about to spawn the daemon
		}
		s.State = api.StateStopped
		if st.State != api.StateStopped && st.State != api.StateError {
			s.State = st.State // "Broken": an unreadable config
		}
		s.Error = st.Error
	})
}

// applyDisk takes the data-disk usage of a disk event into the snapshot's status, as the
// daemon did into its own, and warns if the disk is now nearly full.
func (c *Controller) applyDisk(u proto.DiskUsage) {
	var st api.Status
	c.update(func(s *Snapshot) {
		// A new Info: snapshots handed out earlier share the old one.
		var g proto.Info
		if s.Status.Guest != nil {
			g = *s.Status.Guest
		}
		g.DataDisk = u
		s.Status.Guest = &g
		st = s.Status
	})
	c.checkDisk(st)
}

// checkDisk warns when the data disk is nearly full: once per crossing in a daemon run,
// however many statuses and events show it full. Usage must fall below DiskRearm before
// the next crossing warns again.
func (c *Controller) checkDisk(st api.Status) {
	msg := diskWarning(st)
	id := fmt.Sprintf("%d@%s", st.PID, st.StartedAt)
	c.mu.Lock()
	warned := c.diskWarned == id
	switch {
	case msg != "":
		c.diskWarned = id
	case warned && diskRearmed(st):
		c.diskWarned = ""
	}
	c.mu.Unlock()
	if msg != "" && !warned {
		c.notify("berth: data disk nearly full", msg)
	}
}

// syncEngine follows the engine while the instance is up.
func (c *Controller) syncEngine(st api.Status) {
	up := (st.State == api.StateRunning || st.State == api.StateDegraded) && st.DockerSocket != ""
	c.mu.Lock()
	if up && c.engineCancel != nil && c.engineSock == st.DockerSocket {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.stopEngine()
	if !up {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	eng := NewEngine(st.DockerSocket)
	c.mu.Lock()
	c.engineSock, c.engineCancel, c.engine = st.DockerSocket, cancel, eng
	c.mu.Unlock()
	go c.followEngine(ctx, eng)
}

func (c *Controller) stopEngine() {
	c.mu.Lock()
	cancel := c.engineCancel
	c.engineCancel, c.engineSock, c.engine = nil, "", nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// followEngine lists the containers whenever the engine reports a container event:
// nothing runs between events.
func (c *Controller) followEngine(ctx context.Context, eng *Engine) {
	defer eng.Close()
	refresh := make(chan struct{}, 1)
	kick := func() {
		select {
		case refresh <- struct{}{}:
		default:
		}
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-refresh:
			}
			c.listContainers(ctx, eng)
			// Events come in bursts (create, attach, start, ...): one list covers a burst.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	backoff := c.opts.MinBackoff
	for ctx.Err() == nil {
		opened := false
		err := eng.Events(ctx, func() { opened = true; kick() }, func(EngineEvent) { kick() })
		if ctx.Err() != nil {
			return
		}
		if opened {
			backoff = c.opts.MinBackoff
		}
		c.update(func(s *Snapshot) {
			if ctx.Err() == nil {
				s.EngineError = err.Error()
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.opts.MaxBackoff)
	}
}

func (c *Controller) listContainers(ctx context.Context, eng *Engine) {
	lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	list, err := eng.List(lctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	c.update(func(s *Snapshot) {
		if ctx.Err() != nil {
			return // the instance went down meanwhile
		}
		if err != nil {
			s.EngineError = err.Error()
			return
		}
		s.Containers, s.EngineReady, s.EngineError = list, true, ""
	})
}

// RefreshContainers lists the containers again now.
func (c *Controller) RefreshContainers(ctx context.Context) {
	c.mu.Lock()
	eng := c.engine
	c.mu.Unlock()
	if eng != nil {
		c.listContainers(ctx, eng)
	}
}

// ErrBusy is returned when another action is still running.
var ErrBusy = errors.New("another action is still running")

func (c *Controller) begin(busy string) error {
	c.mu.Lock()
	if c.actionRunning {
		c.mu.Unlock()
		return ErrBusy
	}
	c.actionRunning = true
	c.mu.Unlock()
	c.update(func(s *Snapshot) { s.Busy, s.ActionError = busy, "" })
	return nil
}

func (c *Controller) end(err error, what string) error {
	c.mu.Lock()
	c.actionRunning = false
	c.mu.Unlock()
	c.update(func(s *Snapshot) {
		s.Busy = ""
		if err != nil {
			s.ActionError = err.Error()
		}
		if !s.Daemon && (s.State == api.StateStarting || s.State == api.StateStopping) {
			s.State = api.StateStopped // no daemon came up, or it is gone
		}
	})
	c.Wake()
	if err != nil {
		c.notify("berth: "+what+" failed", err.Error())
	}
	return err
}

// Start starts the instance (creating it on first use) and returns once it runs.
func (c *Controller) Start(ctx context.Context) error {
	if err := c.begin(BusyStarting); err != nil {
		return err
	}
	return c.end(c.start(ctx), "start")
}

func (c *Controller) start(ctx context.Context) error {
	if c.inst.DaemonPID() != 0 {
		return fmt.Errorf("instance %q is already running", c.inst.Name)
	}
	c.update(func(s *Snapshot) { s.State = api.StateStarting })
	// The daemon appears while the starter waits for it: follow it at once.
	go func() {
		for i := 0; i < 100 && ctx.Err() == nil; i++ {
			if c.inst.DaemonPID() != 0 {
				c.Wake()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return c.opts.Start(ctx, c.inst.Name)
}

// Stop stops the instance and returns once its daemon is gone.
func (c *Controller) Stop(ctx context.Context) error {
	if err := c.begin(BusyStopping); err != nil {
		return err
	}
	return c.end(c.stop(ctx), "stop")
}

func (c *Controller) stop(ctx context.Context) error {
	err := instance.Stop(ctx, c.inst, false)
	if errors.Is(err, instance.ErrNotRunning) {
		return nil
	}
	return err
}

// Restart stops the instance if it runs and starts it again: how new settings apply.
func (c *Controller) Restart(ctx context.Context) error {
	if err := c.begin(BusyRestarting); err != nil {
		return err
	}
	err := c.stop(ctx)
	if err == nil {
		err = c.start(ctx)
	}
	return c.end(err, "restart")
}

// ContainerAction starts, stops, restarts or removes a container. The list follows from
// the engine's events.
func (c *Controller) ContainerAction(ctx context.Context, id, action string) error {
	eng, err := c.currentEngine()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	return eng.Do(ctx, id, action)
}

// ContainerLogs returns the last 200 lines of a container's output.
func (c *Controller) ContainerLogs(ctx context.Context, id string) (string, error) {
	eng, err := c.currentEngine()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return eng.Logs(ctx, id, 200)
}

func (c *Controller) currentEngine() (*Engine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.engine == nil {
		return nil, fmt.Errorf("instance %q is not running", c.inst.Name)
	}
	return c.engine, nil
}

// Log names for InstanceLog.
const (
	LogDaemon  = "hostd"   // hostd.log: the host daemon
	LogConsole = "console" // console.log: the guest's serial console
	LogEngine  = "engine"  // dockerd in the guest (control API)
	LogAgent   = "agent"   // berth-agent in the guest (control API)
)

// LogNames lists the logs the logs window offers.
var LogNames = []string{LogDaemon, LogEngine, LogAgent, LogConsole}

// maxLog bounds what the logs window shows: the tail of a log.
const maxLog = 256 << 10

// InstanceLog returns the tail of one of the instance's logs.
func (c *Controller) InstanceLog(ctx context.Context, name string) (string, error) {
	switch name {
	case LogDaemon:
		return tailFile(c.inst.Path(store.HostdLog), maxLog)
	case LogConsole:
		return tailFile(c.inst.Path(store.ConsoleLog), maxLog)
	case LogEngine, LogAgent:
		if c.inst.DaemonPID() == 0 {
			return "", fmt.Errorf("instance %q is not running: the guest logs are read from the running VM", c.inst.Name)
		}
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		rc, err := instance.Client(c.inst).Logs(ctx, name, false)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		return tailReader(rc, maxLog)
	}
	return "", fmt.Errorf("unknown log %q", name)
}

func tailFile(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s does not exist yet: the instance has not been started", path)
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	return tailReader(f, n)
}

// tailReader keeps the last n bytes, cut at a line start.
func tailReader(r io.Reader, n int64) (string, error) {
	b, err := io.ReadAll(r)
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	s := string(b)
	if len(b) == int(n) {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s, err
}

// LogPath is the file behind a file-backed log, for "open the folder" style actions.
func (c *Controller) LogPath(name string) string {
	switch name {
	case LogDaemon:
		return c.inst.Path(store.HostdLog)
	case LogConsole:
		return c.inst.Path(store.ConsoleLog)
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// dirWatch wakes the reconnect loop when the instance directory changes (a daemon started
// from the CLI binds hostd.sock there), so the backoff can be long without the tray
// lagging. It watches only while the loop waits; a watch that cannot be set up is
// simply absent and the backoff alone applies.
type dirWatch struct {
	dir     string
	w       *fsnotify.Watcher
	events  chan struct{}
	watched string
}

func newDirWatch(dir string) *dirWatch {
	d := &dirWatch{dir: dir, events: make(chan struct{}, 1)}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return d
	}
	d.w = w
	go func() {
		for {
			select {
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				select {
				case d.events <- struct{}{}:
				default:
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return d
}

func (d *dirWatch) start() {
	if d.w == nil {
		return
	}
	// Watch the instance directory, or its parent until the instance is created.
	for _, p := range []string{d.dir, filepath.Dir(d.dir)} {
		if d.w.Add(p) == nil {
			d.watched = p
			return
		}
	}
}

func (d *dirWatch) stop() {
	if d.w != nil && d.watched != "" {
		d.w.Remove(d.watched)
		d.watched = ""
	}
	select {
	case <-d.events:
	default:
	}
}

func (d *dirWatch) close() {
	if d.w != nil {
		d.w.Close()
	}
}
