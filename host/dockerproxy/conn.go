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
//
// The data path costs what the unchecked socket's does: Pipe's io.Copy uses WriteTo, which
// writes the engine's bytes straight from the read buffer they arrived in (no second copy),
// one write per read for bodies, chunked bodies included (their framing is checked in place,
// not line by line), and once a connection stops being HTTP it hands over to io.Copy on the
// client's socket, exactly as without the check. Only request heads and create bodies are
// copied out.
type Conn struct {
	c      HalfCloser
	br     *bufio.Reader
	policy *Policy
	log    *slog.Logger

	wmu sync.Mutex // a refusal is written beside the engine's replies

	pending   []byte // bytes ready for the engine, ahead of the read buffer
	ready     int    // bytes at the head of the read buffer checked and ready for the engine
	raw       bool   // no more HTTP: pass everything through
	bodyN     int64  // bytes of a Content-Length body, or of chunk data, left to pass
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

// bufSize is the read buffer: bodies pass through it in reads of up to this size.
const bufSize = 64 << 10

// Wrap returns c seen through policy; a nil policy returns c itself.
func Wrap(c HalfCloser, policy *Policy, log *slog.Logger) HalfCloser {
	return wrapSize(c, policy, log, bufSize)
}

// wrapSize is Wrap with a read buffer of size bytes (tests walk buffer boundaries with
// small ones).
func wrapSize(c HalfCloser, policy *Policy, log *slog.Logger, size int) HalfCloser {
	if policy == nil {
		return c
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{c: c, br: bufio.NewReaderSize(c, size), policy: policy, log: log}
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
		switch {
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.ready > 0:
			n, err := c.br.Read(p[:min(len(p), c.ready)])
			c.ready -= n
			return n, err
		case c.raw && !c.done && c.br.Buffered() == 0:
			return c.c.Read(p)
		}
		if err := c.step(); err != nil {
			return 0, err
		}
	}
}

// WriteTo writes the bytes for the engine to w until the client's EOF (Pipe's io.Copy
// calls it). Checked body bytes are written from the read buffer itself.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		switch {
		case len(c.pending) > 0:
			n, err := w.Write(c.pending)
			total += int64(n)
			c.pending = c.pending[n:]
			if err != nil {
				return total, err
			}
			if len(c.pending) == 0 {
				c.pending = nil
			}
			continue
		case c.ready > 0:
			buf, _ := c.br.Peek(c.ready) // buffered: no read
			n, err := w.Write(buf)
			c.br.Discard(n)
			c.ready -= n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		case c.raw && !c.done && c.br.Buffered() == 0:
			// No more HTTP: the rest is copied as the unchecked socket copies it.
			n, err := io.Copy(w, c.c)
			return total + n, err
		}
		if err := c.step(); err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
	}
}

// step readies the next bytes for the engine (c.pending or c.ready), or finds the
// connection raw, done or at its end. It runs only when nothing is pending or ready.
func (c *Conn) step() error {
	switch {
	case c.done:
		return io.EOF
	case c.raw:
		c.ready = c.br.Buffered()
		return nil
	case c.chunk == chunkNone && c.bodyN > 0:
		// A Content-Length body passes as it comes; one cut short by the client's EOF
		// reaches the engine as it came.
		if c.br.Buffered() == 0 {
			if _, err := c.br.Peek(1); err != nil {
				return err
			}
		}
		n := min(int64(c.br.Buffered()), c.bodyN)
		c.ready, c.bodyN = int(n), c.bodyN-n
		if c.bodyN == 0 && c.afterBody {
			c.raw = true
		}
		return nil
	case c.chunk != chunkNone:
		return c.stepChunked()
	default:
		return c.nextRequest()
	}
}

// stepChunked readies as much of a chunked body as the read buffer holds whole: data, and
// framing lines that are complete. A line cut by the buffer's end waits for more bytes.
func (c *Conn) stepChunked() error {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		n := c.scanChunked(buf)
		if n > 0 || c.raw || c.chunk == chunkNone {
			c.ready = n
			return nil
		}
		if len(buf) == c.br.Size() {
			// A line longer than the buffer: not ours to judge, pass everything on.
			c.raw = true
			return nil
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 {
				// The client's last bytes, no complete line: the engine judges them.
				c.raw = true
				return nil
			}
			return err
		}
	}
}

// scanChunked walks the chunked framing in buf from the current state and returns how many
// bytes of buf it passed: whole data runs and complete lines, each as it came. A line it
// cannot parse makes the connection raw from there.
func (c *Conn) scanChunked(buf []byte) int {
	off := 0
	for off < len(buf) && !c.raw && c.chunk != chunkNone {
		if c.chunk == chunkData && c.bodyN > 0 {
			k := min(int64(len(buf)-off), c.bodyN)
			off += int(k)
			c.bodyN -= k
			continue
		}
		i := bytes.IndexByte(buf[off:], '\n')
		if i < 0 {
			break // a line cut by the buffer's end
		}
		line := buf[off : off+i+1]
		switch c.chunk {
		case chunkData: // bodyN == 0: the CRLF after the data
			if len(bytes.TrimRight(line, "\r\n")) != 0 {
				c.raw = true
				return off
			}
			c.chunk = chunkSize
		case chunkSize:
			n, ok := parseChunkSize(line)
			if !ok {
				c.raw = true
				return off
			}
			if n == 0 {
				c.chunk = chunkTrailer
			} else {
				c.chunk, c.bodyN = chunkData, n
			}
		case chunkTrailer:
			if len(bytes.TrimRight(line, "\r\n")) == 0 {
				c.chunk = chunkNone
				if c.afterBody {
					c.raw = true
				}
			}
		}
		off += len(line)
	}
	return off
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
	case kindSwarm:
		if c.policy.Swarm != nil {
			if err := c.policy.Swarm(); err != nil {
				c.log.Info("swarm request refused", "target", h.target, "err", err)
				c.refuse(h, err)
				return nil
			}
		}
		c.pending = raw
		c.startBody(h)
		return nil
	case kindCreateContainer, kindService:
		if c.policy.NoMountCheck {
			c.pending = raw
			c.startBody(h)
			return nil
		}
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
func (c *Conn) refuse(h *head, why error) {
	msg, _ := json.Marshal(map[string]string{"message": why.Error()})
	msg = append(msg, '\n')
	resp := fmt.Sprintf("%s 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", h.proto, len(msg))
	c.wmu.Lock()
	_, err := c.c.Write(append([]byte(resp), msg...))
	c.wmu.Unlock()
	if err != nil {
		c.log.Debug("failed to answer a refused request", "err", err)
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
