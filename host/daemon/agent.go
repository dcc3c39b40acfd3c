package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/hashicorp/yamux"
)

// agentClient opens streams to berth-agent over one yamux session.
type agentClient struct {
	sess *yamux.Session
}

func newAgentClient(conn net.Conn) (*agentClient, error) {
	sess, err := yamux.Client(conn, proto.YamuxConfig())
	if err != nil {
		return nil, err
	}
	return &agentClient{sess: sess}, nil
}

// open starts a stream with req and returns it once the agent accepted it. It gives up
// when ctx ends, which also covers a guest that never boots.
func (a *agentClient) open(ctx context.Context, req proto.Request) (*yamux.Stream, proto.Response, error) {
	type result struct {
		st   *yamux.Stream
		resp proto.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		st, err := a.sess.OpenStream()
		if err != nil {
			done <- result{err: fmt.Errorf("agent session: %w", err)}
			return
		}
		if err := proto.WriteJSONLine(st, req); err != nil {
			st.Close()
			done <- result{err: err}
			return
		}
		var resp proto.Response
		if err := proto.ReadJSONLine(st, &resp); err != nil {
			st.Close()
			done <- result{err: fmt.Errorf("agent did not answer %s: %w", req.Type, err)}
			return
		}
		if resp.Error != "" {
			st.Close()
			done <- result{resp: resp, err: fmt.Errorf("agent: %s", resp.Error)}
			return
		}
		done <- result{st: st, resp: resp}
	}()
	select {
	case r := <-done:
		return r.st, r.resp, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.st != nil {
				r.st.Close()
			}
		}()
		return nil, proto.Response{}, ctx.Err()
	}
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

func (a *agentClient) close() { a.sess.Close() }

// followUpdates opens a stream of type typ on which the agent writes a JSON value of T a
// line (ports, disk), and applies each until the stream ends or ctx does.
func followUpdates[T any](ctx context.Context, agent *agentClient, typ string, log *slog.Logger, apply func(T)) error {
	st, _, err := agent.open(ctx, proto.Request{Type: typ})
	if err != nil {
		return err
	}
	defer st.Close()
	go func() { <-ctx.Done(); st.Close() }()
	sc := proto.Scanner(st)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			log.Warn("bad update from the agent", "stream", typ, "err", err)
			continue
		}
		apply(v)
	}
	return sc.Err()
}
