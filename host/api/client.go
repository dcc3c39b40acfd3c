package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/berth-dev/berth/guestagent/proto"
)

// Client talks to one host daemon.
type Client struct {
	sock string
	http *http.Client
}

// NewClient returns a client for the control socket at sock.
func NewClient(sock string) *Client {
	return &Client{
		sock: sock,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}},
	}
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// request sends a request and turns non-2xx answers into errors.
func (c *Client) request(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hostd"+path, r)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the berth daemon at %s: %w", c.sock, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e ErrorResponse
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("berth daemon: %s", resp.Status)
	}
	return resp, nil
}

// Status returns the instance status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// Stop asks the daemon to stop the VM; it returns once the VM is down.
func (c *Client) Stop(ctx context.Context, force bool) error {
	return c.do(ctx, http.MethodPost, "/v1/stop", StopRequest{Force: force}, nil)
}

// Events streams events until ctx ends or the daemon goes away. The first event is the
// current state.
func (c *Client) Events(ctx context.Context, fn func(Event) bool) error {
	resp, err := c.request(ctx, http.MethodGet, "/v1/events", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			return err
		}
		if !fn(ev) {
			return nil
		}
	}
}

// Logs streams a guest log ("agent" or "engine").
func (c *Client) Logs(ctx context.Context, name string, follow bool) (io.ReadCloser, error) {
	q := url.Values{"name": {name}}
	if follow {
		q.Set("follow", "1")
	}
	resp, err := c.request(ctx, http.MethodGet, "/v1/logs?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ExecConn is an exec session: frames as in package proto.
type ExecConn struct {
	net.Conn
	R *bufio.Reader // read frames from here: it holds bytes read past the HTTP answer
}

// Exec starts a command in the guest and returns the upgraded connection.
func (c *Client) Exec(ctx context.Context, req proto.ExecRequest) (*ExecConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.sock)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the berth daemon at %s: %w", c.sock, err)
	}
	body, _ := json.Marshal(req)
	hreq, _ := http.NewRequest(http.MethodPost, "http://hostd/v1/exec", bytes.NewReader(body))
	hreq.Header.Set("Connection", "Upgrade")
	hreq.Header.Set("Upgrade", "berth-exec")
	if err := hreq.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, hreq)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		var e ErrorResponse
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s", e.Error)
		}
		return nil, fmt.Errorf("exec: %s", resp.Status)
	}
	return &ExecConn{Conn: conn, R: br}, nil
}

// Ports lists the forwarded ports.
func (c *Client) Ports(ctx context.Context) ([]PortForward, error) {
	var p []PortForward
	err := c.do(ctx, http.MethodGet, "/v1/ports", nil, &p)
	return p, err
}

// Mounts lists the shared directories.
func (c *Client) Mounts(ctx context.Context) ([]Mount, error) {
	var m []Mount
	err := c.do(ctx, http.MethodGet, "/v1/mounts", nil, &m)
	return m, err
}
