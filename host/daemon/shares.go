package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/vm"
)

// shares tracks an instance's shared directories.
type shares struct {
	mu       sync.Mutex
	list     []fileshare.Share
	types    []string
	mounts   []api.Mount
	watchers []*fileshare.Watcher
	notify   notifier
}

// notifier carries host changes to the guest on the current agent session's notify stream.
type notifier struct {
	mu    sync.Mutex
	roots []string      // the shares whose changes are replayed; set once they are mounted
	st    *yamux.Stream // nil between sessions: changes then are not replayed
}

// notifyBatch bounds the events of one line, so no batch makes a huge line.
const notifyBatch = 512

func (n *notifier) send(evs []proto.NotifyEvent) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for len(evs) > 0 && n.st != nil {
		k := min(len(evs), notifyBatch)
		if err := proto.WriteJSONLine(n.st, evs[:k]); err != nil {
			return
		}
		evs = evs[k:]
	}
}

// serve opens the notify stream on agent's session and keeps it as the current one until
// ctx ends (the session's end).
func (n *notifier) serve(ctx context.Context, agent *agentClient) error {
	n.mu.Lock()
	watched := len(n.roots) > 0
	n.mu.Unlock()
	if !watched {
		return nil
	}
	st, _, err := agent.open(ctx, proto.Request{Type: proto.TypeNotify})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.st = st
	n.mu.Unlock()
	<-ctx.Done()
	n.mu.Lock()
	n.st = nil
	n.mu.Unlock()
	st.SetDeadline(time.Now())
	return st.Close()
}

// prepareShares validates the shares and picks each one's device (caps.ShareDevice); the
// driver serves them. It runs before the VM starts so a bad share is an immediate, clear
// error.
func (d *Daemon) prepareShares(caps vm.Caps) ([]vm.Share, error) {
	list := d.cfg.Shares
	if err := fileshare.Validate(list); err != nil {
		return nil, fmt.Errorf("invalid shares in %s: %w", d.inst.Path("berth.yaml"), err)
	}
	out := make([]vm.Share, len(list))
	types := make([]string, len(list))
	for i, s := range list {
		out[i] = vm.Share{Tag: fileshare.Tag(i), HostPath: filepath.Clean(s.Path), ReadOnly: s.ReadOnly}
		out[i].Device = caps.ShareDevice(out[i])
		types[i] = out[i].Device
	}
	d.shares.mu.Lock()
	d.shares.list, d.shares.types = list, types
	d.shares.mu.Unlock()
	return out, nil
}

// mountShares asks the agent to mount every share and starts change notification.
func (d *Daemon) mountShares(ctx context.Context, agent *agentClient) {
	sh := d.shares
	if len(sh.list) == 0 {
		return
	}
	req := proto.Request{Type: proto.TypeMount}
	for i, s := range sh.list {
		req.Mounts = append(req.Mounts, proto.Mount{Tag: fileshare.Tag(i), Path: filepath.Clean(s.Path), FSType: sh.types[i], ReadOnly: s.ReadOnly})
	}
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	resp, err := agent.call(mctx, req)
	cancel()
	mounts := make([]api.Mount, len(sh.list))
	var roots []string
	for i, s := range sh.list {
		m := api.Mount{Path: filepath.Clean(s.Path), Type: sh.types[i], ReadOnly: s.ReadOnly, State: "mounted"}
		switch {
		case err != nil:
			m.State, m.Error = "failed", err.Error()
		case i < len(resp.Mounts) && resp.Mounts[i].Error != "":
			m.State, m.Error = "failed", resp.Mounts[i].Error
		}
		// Read-only shares cannot replay changes (the guest cannot touch their mtimes).
		if m.State == "mounted" && !s.NoNotify && !s.ReadOnly {
			m.Notify = true
			roots = append(roots, m.Path)
		}
		mounts[i] = m
	}
	sh.mu.Lock()
	sh.mounts = mounts
	sh.mu.Unlock()
	for _, m := range mounts {
		if m.Error != "" {
			d.publish(api.Event{State: api.StateStarting, Message: "share not mounted", Error: m.Path + ": " + m.Error})
		}
	}
	if len(roots) > 0 {
		sh.notify.mu.Lock()
		sh.notify.roots = roots
		sh.notify.mu.Unlock()
		// Walking the shares (the whole home directory, by default) takes a while under
		// a big tree: it runs beside the boot, not inside it.
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.watchShares(ctx, roots)
		}()
	}
}

// watchShares watches the shares on the host until ctx ends and replays changes in the
// guest through the notifier.
func (d *Daemon) watchShares(ctx context.Context, roots []string) {
	echoes := fileshare.NewEchoFilter(2 * time.Second)
	w, err := fileshare.Watch(ctx, roots, fileshare.DefaultMaxDirs, d.log.With("component", "watch"), func(evs []fileshare.Event) {
		evs = echoes.Filter(evs)
		if len(evs) == 0 {
			return
		}
		out := make([]proto.NotifyEvent, len(evs))
		for i, e := range evs {
			out[i] = proto.NotifyEvent{Path: e.Path, Op: e.Op}
		}
		d.shares.notify.send(out)
	})
	if err != nil {
		d.log.Warn("failed to watch shares", "err", err)
		return
	}
	d.log.Info("watching shares", "roots", roots, "dirs", w.Dirs(), "capped", w.Capped())
	d.shares.mu.Lock()
	d.shares.watchers = append(d.shares.watchers, w)
	d.shares.mu.Unlock()
}

// mountList returns the shares' state for the API.
func (d *Daemon) mountList() []api.Mount {
	sh := d.shares
	sh.mu.Lock()
	defer sh.mu.Unlock()
	out := make([]api.Mount, 0, len(sh.list))
	if sh.mounts == nil {
		for i, s := range sh.list {
			out = append(out, api.Mount{Path: s.Path, Type: sh.types[i], ReadOnly: s.ReadOnly, State: "pending"})
		}
		return out
	}
	for _, m := range sh.mounts {
		if m.Notify && len(sh.watchers) > 0 {
			m.Watched = sh.watchers[0].Dirs()
		}
		out = append(out, m)
	}
	return out
}
