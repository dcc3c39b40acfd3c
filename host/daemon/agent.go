package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/vm"
)

// Agent liveness: the host pings the agent every pingEvery and gives the session up when
// no answer comes within pingTimeout. Most pings are yamux's own (a frame each way, which
// the agent's session reader answers: no stream, no request, so an idle guest does almost
// nothing for it). Every pingInfoEvery-th asks the agent for its info instead, which needs
// the agent itself, not only its yamux layer: a serve process killed in the middle of a
// frame (the usual restart is noticed at once, by the agent's handshake hello), or one
// that hangs, ends the session, and with it every stream that would wait on it forever.
// Giving up also ends every docker stream of the session, so the bound is far above the
// stalls a busy TCG guest has (15 s was seen during a container start). While the
// instance is quiet (no container, no client: nothing for a stall or a hang to hurt) it
// pings every pingQuietEvery instead, as each ping wakes the guest; the clock is checked
// every 60 s all the same. Variables for tests.
var (
	pingEvery      = 10 * time.Second
	pingQuietEvery = 30 * time.Second
	pingTimeout    = 60 * time.Second
	pingInfoEvery  = 6
)

// agentClient opens streams to berth-agent over one yamux session.
type agentClient struct {
	sess *yamux.Session
	log  *slog.Logger
}

// dialAgent connects to the agent through the driver, runs the channel handshake and
// starts a session. It gives up when ctx ends, which also covers a guest that never boots.
func dialAgent(ctx context.Context, drv vm.Driver, log *slog.Logger) (*agentClient, error) {
	conn, err := dialRetry(ctx, drv)
	if err != nil {
		return nil, err
	}
	if err := proto.HostHandshake(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return newAgentClient(conn, log)
}

// dialRetry asks the driver for the agent channel until it connects or ctx ends. A vsock
// connect fails at once while the agent is not listening yet (vz, WSL2), so one try would
// fail every boot that is not already past the agent's start.
func dialRetry(ctx context.Context, drv vm.Driver) (net.Conn, error) {
	backoff := 50 * time.Millisecond
	for {
		conn, err := drv.DialAgent(ctx)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sessionGoneError is an open that failed before anything was sent: the session had ended
// (the host replaced a stalled one, or the agent's serve process restarted). The request
// can go to the next session without having run on this one.
type sessionGoneError struct{ err error }

func (e *sessionGoneError) Error() string { return "agent session: " + e.err.Error() }
func (e *sessionGoneError) Unwrap() error { return e.err }

// openOnLive opens a stream with req on agent's session, or, when that session has ended
// before the request was sent, on the next live one (Daemon.liveAgent), until ctx ends.
func (d *Daemon) openOnLive(ctx context.Context, agent *agentClient, req proto.Request) (*yamux.Stream, error) {
	for {
		st, _, err := agent.open(ctx, req)
		var gone *sessionGoneError
		if !errors.As(err, &gone) {
			return st, err
		}
		next, lerr := d.liveAgent(ctx)
		if lerr != nil {
			return nil, fmt.Errorf("%w; %w", err, lerr)
		}
		if next == agent {
			return nil, err
		}
		agent = next
	}
}

func newAgentClient(conn net.Conn, log *slog.Logger) (*agentClient, error) {
	sess, err := yamux.Client(conn, proto.YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &agentClient{sess: sess, log: log}, nil
}

// open starts a stream with req and returns it once the agent accepted it. It gives up
// when ctx ends: the stream is then closed at once, so a hung agent leaves no goroutine
// and no stream behind.
func (a *agentClient) open(ctx context.Context, req proto.Request) (*yamux.Stream, proto.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, proto.Response{}, err
	}
	st, err := a.sess.OpenStream()
	if errors.Is(err, yamux.ErrSessionShutdown) {
		return nil, proto.Response{}, &sessionGoneError{err}
	}
	if err != nil {
		return nil, proto.Response{}, fmt.Errorf("agent session: %w", err)
	}
	// Any wait below ends with ctx: the deadline unblocks the stream's reads and writes.
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()) })
	fail := func(err error) (*yamux.Stream, proto.Response, error) {
		stop()
		st.SetDeadline(time.Now())
		st.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, proto.Response{}, err
	}
	if err := proto.WriteJSONLine(st, req); err != nil {
		return fail(err)
	}
	var resp proto.Response
	if err := proto.ReadJSONLine(st, &resp); err != nil {
		return fail(fmt.Errorf("agent did not answer %s: %w", req.Type, err))
	}
	if !stop() {
		// ctx ended right as the answer came: the deadline may be set; the caller's
		// context is done anyway.
		return fail(ctx.Err())
	}
	if resp.Error != "" {
		st.Close()
		return nil, resp, fmt.Errorf("agent: %s", resp.Error)
	}
	return st, resp, nil
}

// call runs a request that answers with one line and closes.
func (a *agentClient) call(ctx context.Context, req proto.Request) (proto.Response, error) {
	st, resp, err := a.open(ctx, req)
	if st != nil {
		st.Close()
	}
	return resp, err
}

func (a *agentClient) info(ctx context.Context) (*proto.Info, error) {
	resp, err := a.call(ctx, proto.Request{Type: proto.TypeInfo})
	if err != nil {
		return nil, err
	}
	if resp.Info == nil {
		return nil, fmt.Errorf("agent sent no info")
	}
	return resp.Info, nil
}

// ping checks that the agent answers within pingTimeout: with yamux's ping, or with an
// info request when full. A yamux ping that yamux gives up on (its write timeout, shorter
// than pingTimeout) is followed by an info request for the rest of pingTimeout.
func (a *agentClient) ping(ctx context.Context, full bool) error {
	deadline := time.Now().Add(pingTimeout)
	if !full {
		done := make(chan error, 1) // the goroutine ends with Ping: yamux's timeout or the session's end
		go func() { _, err := a.sess.Ping(); done <- err }()
		t := time.NewTimer(pingTimeout)
		defer t.Stop()
		select {
		case err := <-done:
			if !errors.Is(err, yamux.ErrTimeout) {
				return err
			}
		case <-t.C:
			return fmt.Errorf("no answer to a ping within %s", pingTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_, err := a.info(pctx)
	return err
}

// stream wraps st for a Pipe: when the pipe tears it down because its client is gone, the
// agent is told to drop its end too (its engine connection may still be sending).
func (a *agentClient) stream(st *yamux.Stream) proto.HalfStream {
	return proto.HalfStream{Stream: st, OnAbort: func() { go a.cancel(st.StreamID()) }}
}

// cancel asks the agent to tear down stream id (proto.TypeCancel); bounded.
func (a *agentClient) cancel(id uint32) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.call(ctx, proto.Request{Type: proto.TypeCancel, Stream: id}); err != nil && !a.closed() {
		a.log.Debug("agent did not take a stream cancel", "stream", id, "err", err)
	}
}

func (a *agentClient) close() { a.sess.Close() }

// done is closed when the session ends.
func (a *agentClient) done() <-chan struct{} { return a.sess.CloseChan() }

func (a *agentClient) closed() bool { return a.sess.IsClosed() }

// keepalive asks the agent for its info until the session ends or ctx does, and closes the
// session when an answer does not come within pingTimeout, so its owner reconnects.
func (a *agentClient) keepalive(ctx context.Context) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		_, err := a.info(pctx)
		cancel()
		if err != nil && ctx.Err() == nil && !a.closed() {
			a.log.Warn("the agent did not answer; reconnecting", "err", err, "timeout", pingTimeout)
			a.close()
			return
		}
	}
}

// followUpdates opens a stream of type typ on which the agent writes a JSON value of T a
// line (ports, disk), and applies each until the stream ends or ctx does.
func followUpdates[T any](ctx context.Context, agent *agentClient, typ string, log *slog.Logger, apply func(T)) error {
	st, _, err := agent.open(ctx, proto.Request{Type: typ})
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Now()); st.Close() })
	defer stop()
	return proto.ReadLines(st, func(line []byte, err error) {
		var v T
		if err == nil {
			err = json.Unmarshal(line, &v)
		}
		if err != nil {
			log.Warn("bad update from the agent", "stream", typ, "err", err)
			return
		}
		apply(v)
	})
}
