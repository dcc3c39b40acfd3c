package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/berth-dev/berth/host/localsock"
)

// Bounds of a stop request when the caller's context has none: the daemon's own graceful
// stop takes at most about 2 minutes (90 s for the guest, 15 s for ACPI, then a kill), a
// forced one seconds.
const (
	DefaultStopTimeout      = 3 * time.Minute
	DefaultForceStopTimeout = 30 * time.Second
)

// Client talks to one host daemon.
type Client struct {
	sock string
	http *http.Client
	// StopTimeout and ForceStopTimeout bound Stop when the caller's context has no
	// deadline (zero: DefaultStopTimeout, DefaultForceStopTimeout).
	StopTimeout, ForceStopTimeout time.Duration
}

// NewClient returns a client for the control socket at sock.
func NewClient(sock string) *Client {
	return &Client{
		sock: sock,
		http: localsock.HTTPClient(sock),
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

// ErrStopTimeout is returned by Stop when the daemon has not answered within the bound.
var ErrStopTimeout = errors.New("the berth daemon did not finish the stop in time")

// Stop asks the daemon to stop the VM; it returns once the VM is down. It never waits
// forever: the bound is ctx's deadline, else StopTimeout (ForceStopTimeout with force);
// when it passes without an answer the error wraps ErrStopTimeout.
func (c *Client) Stop(ctx context.Context, force bool) error {
	var d time.Duration
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	} else {
		if d = c.StopTimeout; d <= 0 {
			d = DefaultStopTimeout
		}
		if force {
			if d = c.ForceStopTimeout; d <= 0 {
				d = DefaultForceStopTimeout
			}
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, d, ErrStopTimeout)
	defer cancel()
	err := c.do(ctx, http.MethodPost, "/v1/stop", StopRequest{Force: force}, nil)
	if err != nil && ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrStopTimeout) || errors.Is(cause, context.DeadlineExceeded) {
			return fmt.Errorf("%w: no answer from %s within %s", ErrStopTimeout, c.sock, d.Round(time.Millisecond))
		}
	}
	return err
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

// ExecConn is an exec session: it carries the exec frames of the agent protocol
// (docs/agent-protocol.md; guestagent/proto reads and writes them).
type ExecConn struct {
	net.Conn
	R *bufio.Reader // read frames from here: it holds bytes read past the HTTP answer
}

// Exec starts a command in the guest and returns the upgraded connection.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*ExecConn, error) {
	conn, err := localsock.Dial(ctx, c.sock)
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
