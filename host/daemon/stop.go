package daemon

// Serving a running VM and stopping it: graceful power-off, ACPI, kill.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/vm"
)

// serve runs until the VM exits or a stop is requested.
func (d *Daemon) serve(ctx context.Context, drv vm.Driver, exit *vmExit) error {
	defer d.closeDocker()
	select {
	case <-exit.done:
		d.handOverContext()
		err := exit.err
		if err == nil {
			err = errors.New("the VM powered off by itself")
		}
		return fmt.Errorf("VM exited unexpectedly: %w", err)
	case <-d.stopping:
		return d.shutdown(drv, exit, d.stopForce)
	case <-ctx.Done():
		// The daemon itself is told to end (the host shuts down): no stop to refuse, and a
		// VM paused on a full host disk cannot shut down gracefully.
		force := d.stopBlockedByHostDisk() != nil
		if force {
			d.log.Warn("the VM is paused on a full host disk: stopping it at once")
		}
		return d.shutdown(drv, exit, force)
	}
}

// shutdown stops the VM: through the agent (engine stops its containers, disks are
// synced), then an ACPI power-off, then a kill — each step bounded.
func (d *Daemon) shutdown(drv vm.Driver, exit *vmExit, force bool) error {
	if !force {
		d.resumeVM(context.Background(), "stop") // a paused guest cannot stop its engine (idle.go)
	}
	d.setState(api.StateStopping, "stopping", nil)
	if !force {
		d.handOverContext()
	}
	d.closeDocker()
	if !force {
		d.mu.Lock()
		agent := d.agent
		d.mu.Unlock()
		hadAgent := agent != nil && !agent.closed()
		if hadAgent {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := agent.call(ctx, proto.Request{Type: proto.TypeShutdown})
			cancel()
			if err != nil {
				d.log.Warn("agent shutdown request failed", "err", err)
			}
			if waitExit(exit, 90*time.Second) {
				return nil
			}
			d.log.Warn("guest did not power off in 90s; sending ACPI power-off")
		} else {
			d.log.Info("no agent session; sending ACPI power-off")
		}
		// Without an agent (a stop during boot) the guest may not handle the power key
		// yet: wait briefly, not the full grace.
		grace := 15 * time.Second
		if !hadAgent {
			grace = 5 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := drv.Stop(ctx, false)
		cancel()
		if err == nil && waitExit(exit, grace) {
			return nil
		}
		d.log.Warn("guest ignored the power-off; forcing")
	}
	d.killVM(drv, exit)
	return nil
}

func (d *Daemon) killVM(drv vm.Driver, exit *vmExit) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := drv.Stop(ctx, true); err != nil {
		d.log.Warn("force stop failed", "err", err)
	}
	if !waitExit(exit, 30*time.Second) {
		d.log.Error("VM did not exit after a forced stop")
	}
}

// vmExit turns the driver's one-shot exit channel into one that any number of waits can
// watch: done is closed when the VM is gone, err is then its exit error.
type vmExit struct {
	done chan struct{}
	err  error
}

func watchExit(ch <-chan error) *vmExit {
	e := &vmExit{done: make(chan struct{})}
	go func() {
		e.err = <-ch
		close(e.done)
	}()
	return e
}

func waitExit(exit *vmExit, d time.Duration) bool {
	select {
	case <-exit.done:
		return true
	case <-time.After(d):
		return false
	}
}

// requestStop asks run to shut down, during boot as well; only the first request counts.
func (d *Daemon) requestStop(force bool) {
	d.stopOnce.Do(func() {
		d.stopForce = force
		close(d.stopping)
	})
}

// clearDir removes what is inside dir.
func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
