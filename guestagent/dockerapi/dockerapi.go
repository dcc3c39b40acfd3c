// Package dockerapi is berth's one small Docker Engine API client, over a unix socket: the
// agent uses it to watch the engine in the guest (readiness, versions, published ports) and
// the tray to list and drive containers through the forwarded socket. It speaks only the
// calls berth needs, so neither links the Docker SDK.
package dockerapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Client talks to one engine socket.
type Client struct {
	sock string
	http *http.Client
}

// New returns a client for the engine listening on the unix socket sock. Requests are
// bounded by their context; the client itself has no timeout, since events stream for as
// long as they are read.
func New(sock string) *Client {
	return &Client{sock: sock, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		// An event stream holds one connection; lists and actions use a few more.
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}}
}

// Socket is the engine socket the client talks to.
func (c *Client) Socket() string { return c.sock }

// Close drops idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Ping answers nil once the engine serves its API (GET /_ping).
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.Request(ctx, http.MethodGet, "/_ping", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Version is the part of GET /version berth reads.
type Version struct {
	Version       string `json:"Version"`
	APIVersion    string `json:"ApiVersion"`
	KernelVersion string `json:"KernelVersion"`
	Components    []struct {
		Name    string `json:"Name"`
		Version string `json:"Version"`
	} `json:"Components"`
}

// Component returns the version of the named component ("containerd", "runc"), or "".
func (v Version) Component(name string) string {
	for _, c := range v.Components {
		if c.Name == name {
			return c.Version
		}
	}
	return ""
}

// Version asks the engine for its versions.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.getJSON(ctx, "/version", &v)
	return v, err
}

// Container is the part of a GET /containers/json row berth reads.
type Container struct {
	ID     string   `json:"Id"`
	Names  []string `json:"Names"`
	Image  string   `json:"Image"`
	State  string   `json:"State"`
	Status string   `json:"Status"`
	Ports  []Port   `json:"Ports"`
}

// Port is one of a container's ports; PublicPort is 0 for one exposed but not published.
type Port struct {
	IP          string `json:"IP"`
	PrivatePort int    `json:"PrivatePort"`
	PublicPort  int    `json:"PublicPort"`
	Type        string `json:"Type"`
}

// Containers lists the running containers, or every container with all.
func (c *Client) Containers(ctx context.Context, all bool) ([]Container, error) {
	path := "/containers/json"
	if all {
		path += "?all=1"
	}
	var list []Container
	if err := c.getJSON(ctx, path, &list); err != nil {
		return nil, fmt.Errorf("failed to list containers: %w", err)
	}
	return list, nil
}

// InSwarm reports whether the engine is a swarm node: GET /info's Swarm.LocalNodeState
// is anything but "inactive" ("pending", "active", "error", "locked").
func (c *Client) InSwarm(ctx context.Context) (bool, error) {
	var info struct {
		Swarm struct {
			LocalNodeState string `json:"LocalNodeState"`
		} `json:"Swarm"`
	}
	if err := c.getJSON(ctx, "/info", &info); err != nil {
		return false, err
	}
	st := info.Swarm.LocalNodeState
	return st != "" && st != "inactive", nil
}

// FirewallBackend returns the firewall backend the engine programs its rules with: GET
// /info's FirewallBackend.Driver ("iptables", "nftables"; Docker 28.2 and later).
func (c *Client) FirewallBackend(ctx context.Context) (string, error) {
	var info struct {
		FirewallBackend struct {
			Driver string `json:"Driver"`
		} `json:"FirewallBackend"`
	}
	if err := c.getJSON(ctx, "/info", &info); err != nil {
		return "", err
	}
	return info.FirewallBackend.Driver, nil
}

// Event is the part of a GET /events message berth reads.
type Event struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID string `json:"ID"`
	} `json:"Actor"`
}

// ContainerEvents follows the engine's container events until ctx ends or the stream
// breaks: opened is called once the engine has accepted the subscription (list then, and
// nothing is missed), fn for each event. The engine writes only when something happens.
func (c *Client) ContainerEvents(ctx context.Context, opened func(), fn func(Event)) error {
	filters := url.QueryEscape(`{"type":["container"]}`)
	resp, err := c.Request(ctx, http.MethodGet, "/events?filters="+filters, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if opened != nil {
		opened()
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		fn(ev)
	}
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.Request(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// Request sends one request (a body is JSON) and returns the response of a 2xx answer; any
// other answer becomes an error carrying the engine's message.
func (c *Client) Request(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the Docker engine at %s: %w", c.sock, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var m struct {
			Message string `json:"message"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m) == nil && m.Message != "" {
			return nil, errors.New(m.Message)
		}
		return nil, fmt.Errorf("docker engine: %s", resp.Status)
	}
	return resp, nil
}
