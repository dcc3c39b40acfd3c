package dockerproxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
)

// maxCheckedBody bounds the create bodies read whole for the check (they are a few KiB); a
// larger one is forwarded unchecked.
const maxCheckedBody = 8 << 20

// HalfCloser is a byte stream that can close its write side alone (proto.HalfCloser).
type HalfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Conn is a client connection seen through the check: reading it yields the bytes to
// send to the engine; writing it, Close and CloseWrite go to the client unchanged.
type Conn struct {
	c      HalfCloser
	br     *bufio.Reader
	policy *Policy
	log    *slog.Logger

	wmu sync.Mutex // a refusal is written beside the engine's replies

	pending   []byte // bytes ready for the engine
	raw       bool   // no more HTTP: pass everything through
	bodyN     int64  // bytes of a Content-Length body left to pass
	chunk     chunkState
	afterBody bool // go raw once the current body is passed (an upgrade request's body)
	done      bool // a refusal was sent: the engine gets EOF
}

type chunkState int

const (
	chunkNone    chunkState = iota
	chunkSize               // at a chunk-size line
	chunkData               // inside chunk data (bodyN left), then CRLF
	chunkTrailer            // after the last chunk: trailer lines up to an empty one
)

// Wrap returns c seen through policy; a nil policy returns c itself.
func Wrap(c HalfCloser, policy *Policy, log *slog.Logger) HalfCloser {
	if policy == nil {
		return c
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{c: c, br: bufio.NewReaderSize(c, 64<<10), policy: policy, log: log}
}

// NetConn returns the client's connection, for the forwarder's hangup watch.
func (c *Conn) NetConn() net.Conn {
	nc, _ := c.c.(net.Conn)
	return nc
}

func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.c.Write(p)
}

func (c *Conn) Close() error      { return c.c.Close() }
func (c *Conn) CloseWrite() error { return c.c.CloseWrite() }

// Read returns the next bytes for the engine.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		switch {
		case c.done:
			return 0, io.EOF
		case c.raw:
			return c.br.Read(p)
		case c.chunk == chunkData && c.bodyN > 0, c.chunk == chunkNone && c.bodyN > 0:
			// A body cut short by the client's EOF reaches the engine as it came.
			n, err := c.br.Read(p[:min(int64(len(p)), c.bodyN)])
			c.bodyN -= int64(n)
			if c.bodyN == 0 && c.chunk == chunkNone && c.afterBody {
				c.raw = true
			}
			return n, err
		case c.chunk != chunkNone:
			if err := c.nextChunkPart(); err != nil {
				return 0, err
			}
		default:
			if err := c.nextRequest(); err != nil {
				return 0, err
			}
		}
	}
}

// nextChunkPart queues the next framing line of a chunked body as it came.
func (c *Conn) nextChunkPart() error {
	switch c.chunk {
	case chunkData: // bodyN == 0: the CRLF after the data
		line, err := c.readLine()
		if err != nil || c.raw {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) != 0 {
			c.goRaw(line)
			return nil
		}
		c.pending = line
		c.chunk = chunkSize
	case chunkSize:
		line, err := c.readLine()
		if err != nil || c.raw {
			return err
		}
		n, ok := parseChunkSize(line)
		if !ok {
			c.goRaw(line)
			return nil
		}
		c.pending = line
		if n == 0 {
			c.chunk = chunkTrailer
		} else {
			c.chunk, c.bodyN = chunkData, n
		}
	case chunkTrailer:
		line, err := c.readLine()
		if err != nil || c.raw {
			return err
		}
		c.pending = line
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			c.chunk = chunkNone
			if c.afterBody {
				c.raw = true
			}
		}
	}
	return nil
}

// readLine reads one line up to '\n'; a line longer than the buffer is an error.
func (c *Conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		if len(line) > 0 {
			// A line longer than the buffer, or the client's last bytes: pass them on.
			c.goRaw(line)
			return nil, nil
		}
		return nil, err
	}
	return append([]byte(nil), line...), nil
}

// goRaw stops inspecting: what was read goes on as it came, then everything else.
func (c *Conn) goRaw(read []byte) {
	c.pending = append(c.pending, read...)
	c.raw = true
}

// nextRequest reads a request head and decides what follows it.
func (c *Conn) nextRequest() error {
	raw, err := readHead(c.br)
	if err != nil {
		if errors.Is(err, errHeadTooLong) {
			c.goRaw(raw)
			return nil
		}
		if len(raw) > 0 {
			// The client's last bytes were no complete head: the engine judges them.
			c.pending = raw
			c.raw = true
			return nil
		}
		return err
	}
	h, err := parseHead(raw)
	if err != nil {
		c.goRaw(raw)
		return nil
	}
	kind := h.kind()
	switch kind {
	case kindHijack:
		if !h.upgrade && h.detachable() && h.contentLength > 0 && h.contentLength <= 64<<10 {
			// `docker exec -d`: dockerd hijacks an exec start only when it is not detached.
			body := make([]byte, h.contentLength)
			n, err := io.ReadFull(c.br, body)
			c.pending = append(raw, body[:n]...)
			var req struct{ Detach bool }
			if err != nil || json.Unmarshal(body, &req) != nil || !req.Detach {
				c.raw = true
			}
			return nil
		}
		// Pass the head and the body it announces, then raw bytes both ways.
		c.pending = raw
		c.afterBody = true
		c.startBody(h)
		if c.bodyN == 0 && c.chunk == chunkNone {
			c.raw = true
		}
		return nil
	case kindCreateContainer, kindService:
		if h.expectContinue || (h.contentLength > maxCheckedBody) {
			c.log.Info("forwarding a create request unchecked", "target", h.target, "expect", h.expectContinue, "length", h.contentLength)
			c.pending = raw
			c.startBody(h)
			return nil
		}
		return c.checkCreate(raw, h, kind)
	default:
		c.pending = raw
		c.startBody(h)
		return nil
	}
}

func (c *Conn) startBody(h *head) {
	switch {
	case h.chunked:
		c.chunk = chunkSize
	case h.contentLength > 0:
		c.bodyN = h.contentLength
	}
}

// checkCreate reads a create request's body whole, applies the policy, and queues the
// request (rewritten when a bind source was translated) or answers the client itself.
func (c *Conn) checkCreate(rawHead []byte, h *head, kind int) error {
	var body, rawBody []byte
	var err error
	if h.chunked {
		body, rawBody, err = readChunked(c.br, maxCheckedBody)
		if errors.Is(err, errBodyTooLong) {
			c.log.Info("forwarding a create request unchecked: body too long", "target", h.target)
			c.goRaw(append(rawHead, rawBody...))
			return nil
		}
	} else if h.contentLength > 0 {
		body = make([]byte, h.contentLength)
		var n int
		n, err = io.ReadFull(c.br, body)
		body = body[:n]
		rawBody = body
	}
	if err != nil {
		// The client went away mid-body: pass what came, and let the engine see the end.
		c.pending = append(rawHead, rawBody...)
		c.raw = true
		return nil
	}
	newBody, perr := c.policy.checkBody(kind, body)
	var denied *DeniedError
	if errors.As(perr, &denied) {
		c.log.Info("bind mount refused", "path", denied.Path)
		c.refuse(h, denied)
		return nil
	}
	if newBody == nil {
		c.pending = append(rawHead, rawBody...)
		return nil
	}
	c.pending = append(rewriteHead(rawHead, len(newBody)), newBody...)
	return nil
}

// refuse answers the request with a Docker-style error and ends the connection: the
// engine never sees it.
func (c *Conn) refuse(h *head, denied *DeniedError) {
	msg, _ := json.Marshal(map[string]string{"message": denied.Error()})
	msg = append(msg, '\n')
	resp := fmt.Sprintf("%s 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", h.proto, len(msg))
	c.wmu.Lock()
	_, err := c.c.Write(append([]byte(resp), msg...))
	c.wmu.Unlock()
	if err != nil {
		c.log.Debug("failed to answer a refused create", "err", err)
	}
	c.done = true
}

// rewriteHead drops the head's Content-Length and Transfer-Encoding lines and names the
// new body's length.
func rewriteHead(raw []byte, n int) []byte {
	lines := bytes.SplitAfter(raw, []byte("\n"))
	var out bytes.Buffer
	for i, l := range lines {
		if i > 0 {
			name, _, _ := bytes.Cut(l, []byte(":"))
			switch string(bytes.ToLower(name)) {
			case "content-length", "transfer-encoding":
				continue
			}
		}
		if i == len(lines)-2 { // the empty line that ends the head
			out.WriteString("Content-Length: " + strconv.Itoa(n) + "\r\n")
		}
		out.Write(l)
	}
	return out.Bytes()
}

var (
	errHeadTooLong = errors.New("request head too long")
	errBodyTooLong = errors.New("request body too long")
)

// readHead reads up to and including the empty line that ends a head. Empty lines before
// a request line are skipped, as Go's server does.
func readHead(br *bufio.Reader) ([]byte, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(raw) > maxHead {
				return raw, errHeadTooLong
			}
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(raw) > 0 {
				return raw, io.ErrUnexpectedEOF
			}
			return raw, err
		}
		if len(raw) > maxHead {
			return raw, errHeadTooLong
		}
		if len(bytes.TrimLeft(raw, "\r\n")) == 0 {
			continue // stray CRLFs between requests: kept, and skipped by parseHead
		}
		if bytes.HasSuffix(raw, []byte("\n\r\n")) || bytes.HasSuffix(raw, []byte("\n\n")) {
			return raw, nil
		}
	}
}

// readChunked reads a chunked body whole: the decoded bytes and the bytes as they came.
func readChunked(br *bufio.Reader, limit int) (body, raw []byte, err error) {
	readLine := func() ([]byte, error) {
		line, err := br.ReadSlice('\n')
		raw = append(raw, line...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		return line, nil
	}
	for {
		line, err := readLine()
		if err != nil {
			return nil, raw, err
		}
		n, ok := parseChunkSize(line)
		if !ok {
			return nil, raw, errBodyTooLong // not ours to judge: forward as it came
		}
		if n == 0 {
			for { // trailer lines up to an empty one
				line, err := readLine()
				if err != nil {
					return nil, raw, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, raw, nil
				}
			}
		}
		if int64(len(body))+n > int64(limit) {
			return nil, raw, errBodyTooLong
		}
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if k, err := io.ReadFull(br, raw[start:]); err != nil {
			return nil, raw[:start+k], err
		}
		body = append(body, raw[start:]...)
		line, err = readLine()
		if err != nil {
			return nil, raw, err
		}
		if len(bytes.TrimRight(line, "\r\n")) != 0 {
			return nil, raw, errBodyTooLong
		}
	}
}

// parseChunkSize parses "HEX[;ext]\r\n".
func parseChunkSize(line []byte) (int64, bool) {
	s := bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	s = bytes.TrimSpace(s)
	if len(s) == 0 || len(s) > 15 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(s), 16, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
