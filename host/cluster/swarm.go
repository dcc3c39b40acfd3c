package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/berth-dev/berth/guestagent/dockerapi"
)

// Engine is a node's Docker engine, reached through its forwarded socket on the host.
type Engine struct {
	Sock string
	api  *dockerapi.Client
}

// NewEngine returns a client of the engine at the unix socket sock.
func NewEngine(sock string) *Engine { return &Engine{Sock: sock, api: dockerapi.New(sock)} }

// call sends a JSON request and decodes a JSON answer into out (when not nil).
func (e *Engine) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	// No connection is kept between calls: a node's engine restarts with its VM, and a POST
	// on a connection that died meanwhile is not retried.
	defer e.api.Close()
	resp, err := e.api.Request(ctx, method, path, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: invalid answer: %w", method, path, err)
		}
	}
	return nil
}

// SwarmInfo is the part of GET /info's Swarm berth reads.
type SwarmInfo struct {
	NodeID           string `json:"NodeID"`
	NodeAddr         string `json:"NodeAddr"`
	LocalNodeState   string `json:"LocalNodeState"` // inactive, pending, active, error, locked
	ControlAvailable bool   `json:"ControlAvailable"`
	Error            string `json:"Error"`
	Nodes            int    `json:"Nodes"`
	Managers         int    `json:"Managers"`
}

// Swarm returns the engine's swarm state.
func (e *Engine) Swarm(ctx context.Context) (SwarmInfo, error) {
	var info struct {
		Swarm SwarmInfo `json:"Swarm"`
	}
	err := e.call(ctx, http.MethodGet, "/info", nil, &info)
	return info.Swarm, err
}

// Init makes the engine the first manager of a new swarm, advertised (control and data
// path) on the cluster address ip. It listens on ip alone: the port never becomes a
// "public" guest listener forwarded to the host.
func (e *Engine) Init(ctx context.Context, ip string) error {
	return e.call(ctx, http.MethodPost, "/swarm/init", map[string]any{
		"ListenAddr":    ip + ":2377",
		"AdvertiseAddr": ip + ":2377",
		"DataPathAddr":  ip,
	}, nil)
}

// JoinTokens returns the swarm's worker and manager join tokens (a manager only).
func (e *Engine) JoinTokens(ctx context.Context) (worker, manager string, err error) {
	var s struct {
		JoinTokens struct{ Worker, Manager string }
	}
	if err := e.call(ctx, http.MethodGet, "/swarm", nil, &s); err != nil {
		return "", "", err
	}
	return s.JoinTokens.Worker, s.JoinTokens.Manager, nil
}

// Join joins the engine to the swarm managed at managerIP, advertised on ip.
func (e *Engine) Join(ctx context.Context, ip, managerIP, token string) error {
	return e.call(ctx, http.MethodPost, "/swarm/join", map[string]any{
		"ListenAddr":    ip + ":2377",
		"AdvertiseAddr": ip + ":2377",
		"DataPathAddr":  ip,
		"RemoteAddrs":   []string{managerIP + ":2377"},
		"JoinToken":     token,
	}, nil)
}

// Leave makes the engine leave its swarm (force: even as the last manager).
func (e *Engine) Leave(ctx context.Context) error {
	return e.call(ctx, http.MethodPost, "/swarm/leave?force=true", nil, nil)
}

// SwarmNode is one node of GET /nodes.
type SwarmNode struct {
	Hostname     string `json:"hostname"`
	Role         string `json:"role"`
	State        string `json:"state"`        // ready, down, unknown, disconnected
	Availability string `json:"availability"` // active, pause, drain
	Addr         string `json:"addr"`
	Leader       bool   `json:"leader,omitempty"`
}

// Nodes lists the swarm's nodes (a manager only).
func (e *Engine) Nodes(ctx context.Context) ([]SwarmNode, error) {
	var raw []struct {
		Description   struct{ Hostname string }
		Spec          struct{ Role, Availability string }
		Status        struct{ State, Addr string }
		ManagerStatus *struct{ Leader bool }
	}
	if err := e.call(ctx, http.MethodGet, "/nodes", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]SwarmNode, 0, len(raw))
	for _, n := range raw {
		sn := SwarmNode{Hostname: n.Description.Hostname, Role: n.Spec.Role, State: n.Status.State,
			Availability: n.Spec.Availability, Addr: n.Status.Addr}
		if n.ManagerStatus != nil {
			sn.Leader = n.ManagerStatus.Leader
		}
		out = append(out, sn)
	}
	return out, nil
}

// WaitSwarm waits until the engine's swarm state is active (a join completes in the
// background), bounded by timeout.
func (e *Engine) WaitSwarm(ctx context.Context, timeout time.Duration) (SwarmInfo, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := e.Swarm(ctx)
		if err == nil && s.LocalNodeState == "active" {
			return s, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("swarm state %q %s", s.LocalNodeState, s.Error)
			}
			return s, fmt.Errorf("node not active in the swarm after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
