package gui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/fsnotify/fsnotify"
)

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
	case api.StateStarting, api.StateRunning, api.StateDegraded, api.StatePaused, api.StateStopping:
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
			s.State = st.State // api.StateBroken: an unreadable config
		}
		s.Error = st.Error
	})
}

// applyDisk takes the data-disk usage of a disk event into the snapshot's status, as the
// daemon did into its own, and warns if the disk is now nearly full.
func (c *Controller) applyDisk(u api.DiskUsage) {
	var st api.Status
	c.update(func(s *Snapshot) {
		// A new Guest: snapshots handed out earlier share the old one.
		var g api.Guest
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
