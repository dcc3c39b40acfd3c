package gui

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
)

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
