package guestagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/mdlayher/vsock"

	"github.com/berth-dev/berth/guestagent/proto"
)

// Version of the agent, set at build time.
var Version = "dev"

// ServeOptions configure the serve process.
type ServeOptions struct {
	// DockerSocket is the engine socket in the guest.
	DockerSocket string
	// Engine supervises containerd and dockerd; nil serves without an engine (tests).
	Engine *Engine
	// Logs maps a log name ("agent", "engine") to its file.
	Logs map[string]string
	// PowerOff is called after a shutdown request has stopped the engine.
	PowerOff func()
	// Ports reports the ports to forward; nil serves an empty list.
	Ports *PortWatcher
	// Setup installs the host's engine configuration (engine_config.go); nil ignores it.
	Setup *EngineSetup
	// Nap stops the engine's daemons while nothing needs them; every stream that reaches
	// the engine holds it awake. Nil never naps.
	Nap *EngineNap
	// Clock is what TypeClockRead reads and TypeClockAdjust corrects; nil is the system
	// clock for the VM's agent (boot set) and the host's clock, read only, otherwise.
	Clock GuestClock
}

// Server answers host streams.
type Server struct {
	opts ServeOptions
	log  *slog.Logger
	boot *BootInfo
	// shutdownOnce guards the shutdown sequence, which may be asked for by the host and
	// by a signal at the same time.
	shutdownOnce sync.Once
}

// NewServer returns a server; boot may be nil when not running as the VM's init.
func NewServer(opts ServeOptions, boot *BootInfo, log *slog.Logger) *Server {
	if opts.DockerSocket == "" {
		opts.DockerSocket = "/run/docker.sock"
	}
	if opts.Clock == nil {
		opts.Clock = readOnlyClock{}
		if boot != nil {
			opts.Clock = systemClock{}
		}
	}
	return &Server{opts: opts, log: log, boot: boot}
}

// ServeConn runs one session over conn (a vsock connection or the virtio-serial port): the
// channel handshake, then yamux until the session breaks or ctx ends.
func (s *Server) ServeConn(ctx context.Context, conn io.ReadWriteCloser) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := proto.AgentHandshake(conn); err != nil {
		return fmt.Errorf("channel handshake: %w", err)
	}
	sess, err := yamux.Server(conn, proto.YamuxConfig())
	if err != nil {
		return fmt.Errorf("failed to start session: %w", err)
	}
	defer sess.Close()
	streams := &streamSet{cancels: map[uint32]context.CancelFunc{}}
	defer streams.cancelAll()
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("session ended: %w", err)
		}
		// Registered before the next stream is accepted, so a TypeCancel that follows
		// always finds it.
		sctx := streams.add(ctx, st.StreamID())
		go func() {
			defer streams.done(st.StreamID())
			// However a handler waits on the stream, it returns once the stream's context
			// ends: the session closed, or the host cancelled it.
			stop := context.AfterFunc(sctx, func() { st.SetDeadline(time.Now()); st.Close() })
			defer stop()
			s.handle(sctx, st, streams)
		}()
	}
}

// streamSet holds the cancel function of each open stream of a session.
type streamSet struct {
	mu      sync.Mutex
	cancels map[uint32]context.CancelFunc
}

func (ss *streamSet) add(ctx context.Context, id uint32) context.Context {
	sctx, cancel := context.WithCancel(ctx)
	ss.mu.Lock()
	ss.cancels[id] = cancel
	ss.mu.Unlock()
	return sctx
}

func (ss *streamSet) done(id uint32) {
	ss.mu.Lock()
	cancel := ss.cancels[id]
	delete(ss.cancels, id)
	ss.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// cancel ends stream id; it is not an error if the stream already ended.
func (ss *streamSet) cancel(id uint32) {
	ss.mu.Lock()
	cancel := ss.cancels[id]
	ss.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (ss *streamSet) cancelAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, cancel := range ss.cancels {
		cancel()
	}
}

// ServeListener accepts connections (vsock) and serves each as its own session. allow
// decides from the peer's address whether a connection may speak to the agent at all; a
// refused peer is logged and closed before a byte is read.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, allow func(net.Addr) bool) error {
	return proto.AcceptLoop(ctx, ln, s.log, func(c net.Conn) {
		if !allow(c.RemoteAddr()) {
			s.log.Warn("refused an agent connection from a peer that is not the host", "remote", c.RemoteAddr())
			c.Close()
			return
		}
		if err := s.ServeConn(ctx, c); err != nil && ctx.Err() == nil {
			s.log.Info("agent session ended", "remote", c.RemoteAddr(), "err", err)
		}
	})
}

// FromHost admits a vsock peer only if it is the host (VMADDR_CID_HOST: the hypervisor's
// host side on QEMU, Virtualization.framework and Hyper-V alike). Everything inside the
// guest, a container's process included, dials from CID 1 (a loopback transport) or the
// guest's own CID and is refused, so no container reaches the engine or an exec stream
// through the agent (the Docker Desktop CVE-2025-9074 class; docs/security.md).
func FromHost(a net.Addr) bool {
	va, ok := a.(*vsock.Addr)
	return ok && va.ContextID == vsock.Host
}

func (s *Server) handle(ctx context.Context, st *yamux.Stream, streams *streamSet) {
	defer st.Close()
	var req proto.Request
	if err := proto.ReadJSONLine(st, &req); err != nil {
		s.log.Warn("bad stream header", "err", err)
		return
	}
	var err error
	switch req.Type {
	case proto.TypeInfo:
		err = proto.WriteJSONLine(st, proto.Response{Info: s.Info(ctx)})
	case proto.TypeTime:
		err = s.setTime(req.TimeUnixNano)
		err = reply(st, err)
	case proto.TypeClockRead:
		now := s.opts.Clock.Now()
		err = proto.WriteJSONLine(st, proto.Response{Clock: &proto.ClockResult{GuestUnixNano: now.UnixNano()}})
	case proto.TypeClockAdjust:
		err = s.clockAdjust(st, time.Duration(req.ClockAdjustNanos))
	case proto.TypeActivity:
		err = s.activity(ctx, st)
	case proto.TypeActivityCheck:
		err = s.activityCheck(ctx, st)
	case proto.TypeCancel:
		streams.cancel(req.Stream)
		err = reply(st, nil)
	case proto.TypeShutdown:
		_ = reply(st, nil)
		s.Shutdown()
	case proto.TypeDocker:
		err = s.docker(ctx, st)
	case proto.TypeExec:
		if s.opts.Ports != nil {
			s.opts.Ports.Kick() // the command may start a server: scan for listeners soon
		}
		err = s.exec(ctx, st, req.Exec)
	case proto.TypeEvents:
		err = s.events(ctx, st)
	case proto.TypeLogs:
		err = s.logs(ctx, st, req.Log, req.Follow)
	case proto.TypeMount:
		err = s.mountShares(st, req.Mounts)
	case proto.TypeNotify:
		err = s.notify(ctx, st)
	case proto.TypePorts:
		err = s.ports(ctx, st)
	case proto.TypeDisk:
		err = s.disk(ctx, st)
	case proto.TypeForward:
		err = s.forwardTCP(ctx, st, req.IP, req.Port)
	case proto.TypeUDP:
		err = s.forwardUDP(ctx, st, req.IP, req.Port)
	case proto.TypeEngineConfig:
		err = reply(st, s.engineConfig(req.Engine))
	default:
		err = reply(st, fmt.Errorf("%s %q", proto.UnknownType, req.Type))
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, context.Canceled) {
		s.log.Debug("stream ended", "type", req.Type, "err", err)
	}
}

func reply(w io.Writer, err error) error {
	r := proto.Response{}
	if err != nil {
		r.Error = err.Error()
	}
	if werr := proto.WriteJSONLine(w, r); werr != nil {
		return werr
	}
	return err
}

// Info reports the guest's state.
func (s *Server) Info(ctx context.Context) *proto.Info {
	in := &proto.Info{
		ProtocolVersion: proto.Version,
		AgentVersion:    Version,
		Arch:            runtime.GOARCH,
		Kernel:          kernelRelease(),
		Uptime:          uptime(),
		Engine:          proto.EngineStopped,
	}
	if s.boot != nil {
		in.KernelBoot = s.boot.KernelBoot
		in.IP = s.boot.IP
	}
	if s.opts.Engine != nil {
		in.Engine = s.opts.Engine.State()
		v := s.opts.Engine.Versions() // versions.go
		in.EngineVersion, in.EngineAPIVersion = v.Engine, v.API
		in.ContainerdVersion, in.RuncVersion, in.InitVersion = v.Containerd, v.Runc, v.Init
	}
	in.DataDisk = diskUsage(dataMount)
	in.OS = osPrettyName()
	return in
}

// Shutdown stops the engine gracefully and powers off. It runs once.
func (s *Server) Shutdown() {
	s.shutdownOnce.Do(func() {
		s.log.Info("shutdown requested")
		if s.opts.Engine != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			s.opts.Engine.Stop(ctx)
			cancel()
		}
		if s.opts.PowerOff != nil {
			s.opts.PowerOff()
		}
	})
}

// docker pipes the stream to the engine socket. Each direction ends with a half-close so
// `docker run -i` sees stdin EOF while its output keeps flowing. The connection keeps a
// napping engine awake (dockerHold).
func (s *Server) docker(ctx context.Context, st *yamux.Stream) error {
	h := &dockerHold{nap: s.opts.Nap}
	h.hold() // before the dial: the engine answers it at once
	defer h.end()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", s.opts.DockerSocket)
	if err != nil {
		return reply(st, fmt.Errorf("engine socket: %w", err))
	}
	if err := reply(st, nil); err != nil {
		c.Close()
		return err
	}
	client := &readHook{HalfCloser: proto.HalfStream{Stream: st}, fn: h.request}
	engine := &readHook{HalfCloser: c.(*net.UnixConn), fn: func([]byte) { h.answered() }}
	return proto.Pipe(ctx, client, engine)
}

// dockerHold keeps the engine awake (EngineNap) for one docker connection: from each
// request on, until the connection closes — but for an event watch (`docker events`, the
// tray's) only until the engine starts to answer it, as it then only waits for events that
// another client must cause. A request that follows on the same connection holds again
// before its bytes reach the engine. Requests are told by the request line at the start of
// what the client sends (docker clients do not pipeline).
type dockerHold struct {
	nap     *EngineNap
	mu      sync.Mutex
	release func() // nil while not held
	watch   bool   // the request in progress is an event watch
}

func (h *dockerHold) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release == nil {
		h.release = h.nap.Hold("a docker client")
	}
}

// request sees bytes from the client before they are passed on.
func (h *dockerHold) request(b []byte) {
	switch {
	case isEventWatch(b):
		h.hold()
		h.mu.Lock()
		h.watch = true
		h.mu.Unlock()
	case isRequestLine(b):
		h.hold()
		h.mu.Lock()
		h.watch = false
		h.mu.Unlock()
	}
}

// answered sees the engine's bytes.
func (h *dockerHold) answered() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watch && h.release != nil {
		h.release()
		h.release = nil
	}
}

func (h *dockerHold) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.release != nil {
		h.release()
		h.release = nil
	}
}

// readHook calls fn with each chunk read from the stream, before it is passed on.
type readHook struct {
	proto.HalfCloser
	fn func([]byte)
}

func (r *readHook) Read(p []byte) (int, error) {
	n, err := r.HalfCloser.Read(p)
	if n > 0 {
		r.fn(p[:n])
	}
	return n, err
}

// Abort passes a Pipe's teardown on (proto.HalfStream's Abort).
func (r *readHook) Abort() {
	if a, ok := r.HalfCloser.(interface{ Abort() }); ok {
		a.Abort()
		return
	}
	r.HalfCloser.Close()
}

// NetConn is the socket underneath, watched for hang-ups by proto.Pipe.
func (r *readHook) NetConn() net.Conn {
	c, _ := r.HalfCloser.(net.Conn)
	return c
}

// isRequestLine reports whether b starts like an HTTP request line ("GET /", "POST /"…).
func isRequestLine(b []byte) bool {
	method, _, ok := bytes.Cut(b[:min(len(b), 9)], []byte(" /"))
	if !ok || len(method) < 3 {
		return false
	}
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// isEventWatch reports whether an HTTP request starting with b is GET /events (with or
// without an API version prefix such as /v1.45).
func isEventWatch(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("GET /"))
	if !ok {
		return false
	}
	if end := bytes.IndexAny(rest, " ?"); end >= 0 {
		rest = rest[:end]
	} else {
		return false // the request line is not all there: not worth guessing
	}
	if v, after, ok := bytes.Cut(rest, []byte("/")); ok && len(v) > 1 && v[0] == 'v' &&
		strings.Trim(string(v[1:]), "0123456789.") == "" {
		rest = after
	}
	return string(rest) == "events"
}

func (s *Server) events(ctx context.Context, st *yamux.Stream) error {
	if err := reply(st, nil); err != nil {
		return err
	}
	if s.opts.Engine == nil {
		<-ctx.Done()
		return nil
	}
	ch, cancel := s.opts.Engine.Subscribe()
	defer cancel()
	return writeUpdates(ctx, st, ch)
}

// writeUpdates writes each value from ch as a JSON line until the host closes the
// stream (its read side ends) or ctx ends.
func writeUpdates[T any](ctx context.Context, st *yamux.Stream, ch <-chan T) error {
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, st); close(gone) }()
	for {
		select {
		case v := <-ch:
			if err := proto.WriteJSONLine(st, v); err != nil {
				return err
			}
		case <-gone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) logs(ctx context.Context, st *yamux.Stream, name string, follow bool) error {
	path, ok := s.opts.Logs[name]
	if !ok {
		return reply(st, fmt.Errorf("unknown log %q (have: %s)", name, strings.Join(slices.Sorted(maps.Keys(s.opts.Logs)), ", ")))
	}
	f, err := os.Open(path)
	if err != nil {
		return reply(st, err)
	}
	defer func() { f.Close() }()
	if err := reply(st, nil); err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, st); close(gone) }()
	return copyFollow(ctx, st, &f, path, follow, gone)
}

// copyFollow copies *f to w and, when following, keeps copying what is appended. A log
// that was rotated (the path now names another file) is reopened by path once the old one
// is drained, and one cut in place is read again from its start, so `berth logs engine -f`
// goes on across either.
func copyFollow(ctx context.Context, w io.Writer, f **os.File, path string, follow bool, gone <-chan struct{}) error {
	for {
		if _, err := io.Copy(w, *f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		if rotated(*f, path) {
			if nf, err := os.Open(path); err == nil {
				(*f).Close()
				*f = nf
				continue
			}
		}
		// Cut in place (copy-truncate): start again from the top.
		if off, err := (*f).Seek(0, io.SeekCurrent); err == nil {
			if fi, err := (*f).Stat(); err == nil && fi.Size() < off {
				(*f).Seek(0, io.SeekStart)
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-gone:
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// rotated reports whether path now names a different file than f.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}

// ports writes the full port list now and on every change: a host that reconnects gets the
// whole state, never just the events it missed.
func (s *Server) ports(ctx context.Context, st *yamux.Stream) error {
	if err := reply(st, nil); err != nil {
		return err
	}
	if s.opts.Ports == nil {
		return proto.WriteJSONLine(st, []proto.Port{})
	}
	ch, cancel := s.opts.Ports.Subscribe()
	defer cancel()
	return writeUpdates(ctx, st, ch)
}

// forwardTCP pipes a host connection to a port in the guest.
func (s *Server) forwardTCP(ctx context.Context, st *yamux.Stream, ip string, port int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", guestDialAddr(ip, port))
	if err != nil {
		return reply(st, err)
	}
	if err := reply(st, nil); err != nil {
		c.Close()
		return err
	}
	return proto.Pipe(ctx, proto.HalfStream{Stream: st}, c.(*net.TCPConn))
}

// forwardUDP carries one host peer's datagrams: FrameDatagramToGuest frames out to the guest
// port, replies back as FrameDatagramFromGuest frames, until the host closes the stream.
func (s *Server) forwardUDP(ctx context.Context, st *yamux.Stream, ip string, port int) error {
	c, err := net.Dial("udp", guestDialAddr(ip, port))
	if err != nil {
		return reply(st, err)
	}
	defer c.Close()
	if err := reply(st, nil); err != nil {
		return err
	}
	w := &frameWriter{w: st}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// ICMP port unreachable: nobody listens yet; keep the session.
				continue
			}
			if w.frame(proto.FrameDatagramFromGuest, buf[:n]) != nil {
				return
			}
		}
	}()
	for {
		kind, payload, err := proto.ReadFrame(st)
		if err != nil {
			return nil
		}
		if kind == proto.FrameDatagramToGuest {
			c.Write(payload)
		}
	}
}

// frameWriter serialises frames from several goroutines onto one stream.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) frame(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return proto.WriteFrame(f.w, kind, p)
}

func (f *frameWriter) copyFrom(kind byte, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if f.frame(kind, buf[:n]) != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
