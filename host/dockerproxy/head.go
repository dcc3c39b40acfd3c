// Package dockerproxy sits on the forwarded docker socket between a docker client and the
// engine in the guest. It reads only HTTP request heads, and the bodies of the requests that
// create containers and services, to refuse a bind mount whose host path no share carries
// (where dockerd would otherwise quietly create an empty directory in the VM) and to
// translate a bind source that reaches a share only through a host symlink. Everything
// else — responses, other bodies, and hijacked or upgraded connections (attach, exec,
// `logs -f`, BuildKit's /session and /grpc) — passes through byte for byte.
//
// The check is a convenience, not a security boundary (the socket is the user's own): what
// it cannot parse it forwards unchanged and stops inspecting that connection.
package dockerproxy

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// maxHead bounds a request head; a longer one ends inspection of the connection.
const maxHead = 1 << 20

// head is a parsed HTTP/1.x request head.
type head struct {
	method, target, proto string
	// contentLength is the body's length; -1 when the head names none (no body, or chunked).
	contentLength int64
	chunked       bool
	// upgrade: the client asks to switch protocols (Connection: Upgrade); the connection
	// stops being HTTP after this request.
	upgrade bool
	// expectContinue: the client waits for a 100 Continue before it sends the body.
	expectContinue bool
}

var errBadHead = errors.New("malformed request head")

// parseHead parses raw, a request line and header lines up to and including the empty
// line. It accepts what Go's net/http server (dockerd) accepts in the ways that matter for
// framing the body, and refuses the rest, so that both sides agree where a body ends.
func parseHead(raw []byte) (*head, error) {
	// Go's server skips empty lines before a request line.
	for bytes.HasPrefix(raw, []byte("\r\n")) || bytes.HasPrefix(raw, []byte("\n")) {
		raw = raw[bytes.IndexByte(raw, '\n')+1:]
	}
	lines := bytes.Split(raw, []byte("\n"))
	// The last element is what follows the final "\n": nothing.
	if len(lines) < 3 || len(lines[len(lines)-1]) != 0 {
		return nil, errBadHead
	}
	for i := range lines {
		lines[i] = bytes.TrimSuffix(lines[i], []byte("\r"))
	}
	if len(lines[len(lines)-2]) != 0 {
		return nil, errBadHead
	}
	h := &head{contentLength: -1}
	parts := strings.Split(string(lines[0]), " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, errBadHead
	}
	h.method, h.target, h.proto = parts[0], parts[1], parts[2]
	if h.proto != "HTTP/1.1" && h.proto != "HTTP/1.0" {
		return nil, errBadHead
	}
	for _, c := range h.method {
		if c < 'A' || c > 'Z' {
			return nil, errBadHead
		}
	}
	var te []string
	sawCL := false
	for _, l := range lines[1 : len(lines)-2] {
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' {
			// An empty line inside the head cannot occur (it ends the head); a folded
			// line (obs-fold) is refused by Go's server too.
			return nil, errBadHead
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return nil, errBadHead
		}
		v := strings.TrimSpace(string(value))
		switch strings.ToLower(string(name)) {
		case "content-length":
			// As Go's server: digits only, below 2^63; repeated values must agree.
			n, err := strconv.ParseUint(v, 10, 63)
			if err != nil {
				return nil, errBadHead
			}
			if sawCL && int64(n) != h.contentLength {
				return nil, errBadHead
			}
			sawCL, h.contentLength = true, int64(n)
		case "transfer-encoding":
			for _, e := range strings.Split(v, ",") {
				if e = strings.ToLower(strings.TrimSpace(e)); e != "" {
					te = append(te, e)
				}
			}
		case "connection":
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
					h.upgrade = true
				}
			}
		case "upgrade":
			if v != "" {
				h.upgrade = true
			}
		case "expect":
			if strings.EqualFold(v, "100-continue") {
				h.expectContinue = true
			}
		}
	}
	if len(te) > 0 {
		// Go's server accepts only "chunked" (identity is dropped) and ignores a
		// Content-Length beside it.
		if len(te) != 1 || te[0] != "chunked" || h.proto == "HTTP/1.0" {
			return nil, errBadHead
		}
		h.chunked, h.contentLength = true, -1
	}
	return h, nil
}

// path is the target without its query, and without the API version prefix (/v1.43).
func (h *head) path() string {
	p, _, _ := strings.Cut(h.target, "?")
	if rest, ok := strings.CutPrefix(p, "/v"); ok {
		if i := strings.IndexByte(rest, '/'); i > 0 && isVersion(rest[:i]) {
			p = rest[i:]
		}
	}
	return p
}

func isVersion(s string) bool {
	dot := false
	for i, c := range s {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return s != ""
}

// Request kinds that matter here.
const (
	kindPlain           = iota
	kindCreateContainer // POST /containers/create: HostConfig.Binds, HostConfig.Mounts
	kindService         // POST /services/create, /services/{id}/update: TaskTemplate.ContainerSpec.Mounts
	kindSwarm           // POST /swarm/init, /swarm/join: Policy.Swarm
	kindHijack          // the connection is raw bytes after this request
)

// kind classifies the request.
func (h *head) kind() int {
	p := h.path()
	seg := strings.Split(strings.Trim(p, "/"), "/")
	if h.upgrade {
		return kindHijack
	}
	switch {
	case h.method == "POST" && p == "/containers/create":
		return kindCreateContainer
	case h.method == "POST" && (p == "/swarm/init" || p == "/swarm/join"):
		return kindSwarm
	case h.method == "POST" && p == "/services/create",
		h.method == "POST" && len(seg) == 3 && seg[0] == "services" && seg[2] == "update":
		return kindService
	// dockerd hijacks these even without an Upgrade header (old clients).
	case h.method == "POST" && len(seg) == 3 && seg[0] == "containers" && seg[2] == "attach",
		len(seg) == 4 && seg[0] == "containers" && seg[2] == "attach" && seg[3] == "ws",
		h.method == "POST" && len(seg) == 3 && seg[0] == "exec" && seg[2] == "start",
		p == "/session", p == "/grpc":
		return kindHijack
	}
	return kindPlain
}

// detachable: an exec start, which dockerd hijacks only when its body says Detach: false.
func (h *head) detachable() bool {
	seg := strings.Split(strings.Trim(h.path(), "/"), "/")
	return h.method == "POST" && len(seg) == 3 && seg[0] == "exec" && seg[2] == "start"
}
