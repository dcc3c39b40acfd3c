package daemon

// The docker socket: each client connection is one agent stream.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/dockerproxy"
	"github.com/berth-dev/berth/host/localsock"
	"github.com/berth-dev/berth/host/store"
)

const (
	// dockerOpenWait bounds how long a docker client waits for its stream: for a
	// restarted agent, a resuming VM, a restarting engine (dockerd's own start takes 10-25 s
	// under TCG).
	dockerOpenWait = 60 * time.Second
	// dockerOpenRetry is how often an engine that restarts is tried again.
	dockerOpenRetry = 250 * time.Millisecond
	// hangupPoll is how often a docker client waiting for its stream is checked for having
	// hung up.
	hangupPoll = 100 * time.Millisecond
)

func (d *Daemon) closeDocker() {
	d.mu.Lock()
	ln := d.dockerListener
	d.dockerListener = nil
	pm := d.ports
	d.mu.Unlock()
	if pm != nil {
		pm.closeAll()
	}
	if ln != nil {
		ln.Close()
	}
}

// forwardDocker returns the handler of docker socket connections: each one is a stream to
// the engine socket in the guest, torn down when either side leaves.
func (d *Daemon) forwardDocker(ctx context.Context) func(net.Conn) {
	return func(c net.Conn) {
		hc, ok := c.(proto.HalfCloser)
		if !ok {
			c.Close()
			return
		}
		// A restarted agent or engine is waited for, so a client sees a late answer, not
		// a refused one.
		octx, cancel := context.WithTimeout(ctx, dockerOpenWait)
		defer cancel()
		// A client that hangs up meanwhile ends the wait at once.
		unwatch := localsock.WatchHangup(c, hangupPoll, cancel)
		release := d.clientHold(octx) // a paused VM resumes before the stream opens
		agent, st, err := d.openDocker(octx)
		release()
		unwatch()
		if err != nil {
			if ctx.Err() == nil && errors.Is(octx.Err(), context.Canceled) {
				d.log.Debug("docker client hung up before its stream opened")
			} else {
				d.log.Warn("docker connection refused", "err", err)
				d.refuseDocker(c, err)
			}
			c.Close()
			return
		}
		// Bind mounts of unshared host paths and swarm requests the engine cannot take are
		// refused (host/dockerproxy, engine_config.go).
		proto.Pipe(ctx, dockerproxy.Wrap(hc, d.dockerPolicy(), d.log), d.idleStream(agent.stream(st)))
	}
}

// openDocker opens an engine stream. While the engine restarts (the agent starts a dockerd
// that died again) the agent cannot reach the engine socket; the open is retried until it
// can, the engine has failed or stopped, or ctx ends.
func (d *Daemon) openDocker(ctx context.Context) (*agentClient, *yamux.Stream, error) {
	for {
		agent, err := d.liveAgent(ctx)
		if err != nil {
			return nil, nil, err
		}
		st, resp, err := agent.open(ctx, proto.Request{Type: proto.TypeDocker})
		if err == nil {
			return agent, st, nil
		}
		var gone *sessionGoneError
		if errors.As(err, &gone) {
			continue // liveAgent waits for the next session
		}
		if resp.Error == "" || !d.engineMayAnswer() {
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("the engine did not answer within %s: %w", dockerOpenWait, err)
		case <-time.After(dockerOpenRetry):
		}
	}
}

// engineMayAnswer is false once the agent reported the engine failed or stopped.
func (d *Daemon) engineMayAnswer() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.status.Guest == nil {
		return true
	}
	st := proto.EngineState(d.status.Guest.Engine)
	return st != proto.EngineFailed && st != proto.EngineStopped
}

// refuseDocker answers a client whose engine stream could not be opened with an HTTP
// error that the docker CLI shows as it is ("Error response from daemon: berth: …"),
// where a bare close would read as "EOF". The client's request is read and dropped after
// the answer (closing with it unread would reset the connection under the answer); a
// client that neither reads nor closes is given up after a second.
func (d *Daemon) refuseDocker(c net.Conn, err error) {
	msg := fmt.Sprintf("berth: the Docker engine of instance %q cannot be reached: %v. `berth status %s` shows its state",
		d.inst.Name, err, d.inst.Name)
	body, _ := json.Marshal(map[string]string{"message": msg})
	c.SetDeadline(time.Now().Add(time.Second))
	_, werr := fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		len(body)+1, body)
	if hc, ok := c.(proto.HalfCloser); ok && werr == nil {
		hc.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
}

// openDockerSocket serves the engine on docker.sock (and, where the driver asks for it, a
// named pipe) and writes the instance's docker context.
func (d *Daemon) openDockerSocket(ctx context.Context) error {
	ln, err := localsock.Listen(d.inst.Path(store.DockerSock))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.dockerListener = ln
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		proto.AcceptLoop(ctx, localsock.PeerCredListener(ln, d.log), d.log, d.forwardDocker(ctx))
	}()
	// Windows' docker CLI speaks named pipes: the engine is on one there too.
	dockerHost := "unix://" + d.inst.Path(store.DockerSock)
	if d.dockerPipe {
		pipe, err := localsock.PipePath(localsock.DockerPipeName(d.inst.Name))
		if err != nil {
			return err
		}
		pl, err := localsock.ListenPipe(pipe)
		if err != nil {
			return err
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			proto.AcceptLoop(ctx, pl, d.log, d.forwardDocker(ctx))
		}()
		dockerHost = localsock.DockerHost(pipe)
	}
	ctxName := dockerctx.Name(d.inst.Name)
	if err := dockerctx.Ensure(ctxName, dockerHost, fmt.Sprintf("berth instance %q", d.inst.Name)); err != nil {
		d.log.Warn("failed to write the docker context", "context", ctxName, "err", err)
	}
	return nil
}
