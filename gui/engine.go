package gui

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/guestagent/dockerapi"
)

// Engine is the container window's view of the engine, over the instance's forwarded
// unix socket (berth's one small Docker API client, guestagent/dockerapi).
type Engine struct {
	api *dockerapi.Client
}

// NewEngine returns a client for the engine socket at sock (Status.DockerSocket).
func NewEngine(sock string) *Engine { return &Engine{api: dockerapi.New(sock)} }

// Container is one row of the container window.
type Container struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Image  string `json:"image"`
	State  string `json:"state"`  // created, running, paused, restarting, exited, dead
	Status string `json:"status"` // the engine's human text: "Up 3 minutes", "Exited (0) 2 hours ago"
	Ports  []Port `json:"ports"`
}

// Running reports whether the container's processes run (stop and restart make sense).
func (c Container) Running() bool {
	return c.State == "running" || c.State == "restarting" || c.State == "paused"
}

// Port is one published port of a container.
type Port struct {
	HostIP    string `json:"hostIP"`
	HostPort  int    `json:"hostPort"`
	Container int    `json:"containerPort"`
	Proto     string `json:"proto"`
}

// Label is how the port is shown: "localhost:8080" for TCP published on all addresses
// or loopback, "127.0.0.2:53/udp" otherwise.
func (p Port) Label() string {
	l := net.JoinHostPort(p.displayHost(), strconv.Itoa(p.HostPort))
	if p.Proto != "tcp" {
		l += "/" + p.Proto
	}
	return l
}

// URL is the link a click opens, or nil for ports that are not TCP. Published ports are
// bound on the host's loopback by berth (see docs/ports.md), so localhost reaches them.
func (p Port) URL() *url.URL {
	if p.Proto != "tcp" {
		return nil
	}
	scheme := "http"
	if p.Container == 443 || p.Container == 8443 {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(p.displayHost(), strconv.Itoa(p.HostPort)), Path: "/"}
}

func (p Port) displayHost() string {
	switch p.HostIP {
	case "", "0.0.0.0", "::", "127.0.0.1", "::1":
		return "localhost"
	}
	return p.HostIP
}

// apiContainer is a row of GET /containers/json.
type apiContainer = dockerapi.Container

// List returns every container (running or not), sorted by name.
func (e *Engine) List(ctx context.Context) ([]Container, error) {
	raw, err := e.api.Containers(ctx, true)
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(raw))
	for _, r := range raw {
		c := Container{ID: r.ID, Image: r.Image, State: r.State, Status: r.Status}
		if len(r.Names) > 0 {
			c.Name = strings.TrimPrefix(r.Names[0], "/")
		}
		seen := map[string]bool{}
		for _, p := range r.Ports {
			if p.PublicPort == 0 {
				continue // exposed, not published
			}
			port := Port{HostIP: p.IP, HostPort: p.PublicPort, Container: p.PrivatePort, Proto: p.Type}
			// The engine lists a port published on all addresses twice (0.0.0.0 and ::).
			if k := port.Label(); !seen[k] {
				seen[k] = true
				c.Ports = append(c.Ports, port)
			}
		}
		slices.SortFunc(c.Ports, func(a, b Port) int { return cmp.Compare(a.HostPort, b.HostPort) })
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Container) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Container actions.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionRestart = "restart"
	ActionRemove  = "remove"
)

// Do runs a container action.
func (e *Engine) Do(ctx context.Context, id, action string) error {
	id = url.PathEscape(id)
	var method, path string
	switch action {
	case ActionStart, ActionStop, ActionRestart:
		method, path = http.MethodPost, "/containers/"+id+"/"+action
	case ActionRemove:
		method, path = http.MethodDelete, "/containers/"+id+"?force=1"
	default:
		return fmt.Errorf("unknown container action %q", action)
	}
	resp, err := e.api.Request(ctx, method, path, nil)
	if err != nil {
		return fmt.Errorf("failed to %s the container: %w", action, err)
	}
	resp.Body.Close()
	return nil
}

// Logs returns the last lines of a container's output (stdout and stderr merged).
func (e *Engine) Logs(ctx context.Context, id string, tail int) (string, error) {
	resp, err := e.api.Request(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs?stdout=1&stderr=1&tail="+strconv.Itoa(tail), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return "", err
	}
	return demux(b), nil
}

// demux strips the engine's stream framing (an 8-byte header per frame: stream, 3 zero
// bytes, big-endian length) that logs of a container without a TTY carry. A TTY
// container's log is raw bytes and is returned as is.
func demux(b []byte) string {
	var out strings.Builder
	rest := b
	for len(rest) > 0 {
		if len(rest) < 8 || rest[0] > 2 || rest[1] != 0 || rest[2] != 0 || rest[3] != 0 {
			return string(b) // not framed
		}
		n := int(binary.BigEndian.Uint32(rest[4:8]))
		if 8+n > len(rest) {
			return string(b)
		}
		out.Write(rest[8 : 8+n])
		rest = rest[8+n:]
	}
	return out.String()
}

// EngineEvent is a container event (GET /events).
type EngineEvent = dockerapi.Event

// Events follows the engine's container events until ctx ends or the stream breaks: it
// calls opened once the engine has accepted the subscription (list then, and nothing is
// missed), and fn for each event. The engine only writes when something happens, so
// following costs nothing while idle.
func (e *Engine) Events(ctx context.Context, opened func(), fn func(EngineEvent)) error {
	return e.api.ContainerEvents(ctx, opened, fn)
}

// Close drops idle connections.
func (e *Engine) Close() { e.api.Close() }
