package daemon

// The docker socket: each client connection is one agent stream.

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/dockerproxy"
	"github.com/berth-dev/berth/host/localsock"
	"github.com/berth-dev/berth/host/store"
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
		// A restarted agent is waited for, so a client never sees the gap.
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		release := d.clientHold(octx) // a paused VM resumes before the stream opens
		agent, err := d.liveAgent(octx)
		var st *yamux.Stream
		if err == nil {
			st, _, err = agent.open(octx, proto.Request{Type: proto.TypeDocker})
		}
		release()
		if err != nil {
			d.log.Warn("docker connection refused", "err", err)
			c.Close()
			return
		}
		// Bind mounts of unshared host paths are refused (host/dockerproxy, engine_config.go).
		proto.Pipe(ctx, dockerproxy.Wrap(hc, d.mountPolicy(), d.log), d.idleStream(agent.stream(st)))
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
