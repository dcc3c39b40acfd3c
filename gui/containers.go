package gui

import (
	"context"
	"fmt"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// syncEngine follows the engine while the instance is up.
func (c *Controller) syncEngine(st api.Status) {
	up := api.Up(st.State) && st.DockerSocket != "" // Paused too: its watch wakes nothing
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
