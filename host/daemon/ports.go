package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
)

// udpIdle ends a UDP peer's session after this long without traffic.
const udpIdle = 60 * time.Second

// failedRetry is how often a forward that failed to bind is tried again while the guest's
// list stays the same: another process (or another instance of a cluster publishing the
// same port) may have let the host port go.
const failedRetry = 5 * time.Second

// HostBindIP is the host address a guest port is bound to. A port published on every
// address binds loopback unless the instance allows all (portBindAddress: 0.0.0.0): a
// developer's container must not appear on the LAN by surprise (abiosoft/colima#186).
// Loopback stays loopback.
func HostBindIP(published string, bindAll bool) string {
	switch published {
	case "", "0.0.0.0":
		if bindAll {
			return "0.0.0.0"
		}
		return "127.0.0.1"
	case "::":
		if bindAll {
			return "::"
		}
		return "::1"
	case "::1":
		return "::1"
	}
	// 127.0.0.1, or an address of the guest's own that means nothing on the host.
	return "127.0.0.1"
}

// portManager mirrors the guest's port list onto host listeners.
type portManager struct {
	ctx     context.Context                             // the run's: every forward and its connections end with it
	agent   func(context.Context) (*agentClient, error) // the live session, waited for
	bindAll bool
	log     *slog.Logger
	notify  func(msg string, err error) // state-change announcements

	// fixed are forwards of hostd's own (the local registry's API), each on a host port of
	// its own; a guest entry for the same port is left to them.
	fixed []fixedForward
	// retryEvery is failedRetry; tests shorten it.
	retryEvery time.Duration

	mu       sync.Mutex
	forwards map[string]*forward
	last     []proto.Port // the guest's latest list, for retries
	retry    *time.Timer  // pending retry of failed forwards; nil for none
	closed   bool         // closeAll ran: no retry opens anything

	// hold, when set, counts a client connection until the returned func is called, and
	// resumes a paused VM first (idle.go). Set before the first forward opens.
	hold func(context.Context) func()
}

// fixedForward forwards the host's loopback HostPort to the guest port Guest.
type fixedForward struct {
	Guest    proto.Port
	HostPort int
}

type forward struct {
	port     proto.Port
	hostIP   string
	hostPort int
	state    string // "active" or "failed"
	err      string
	closeFn  func()
}

func newPortManager(ctx context.Context, agent func(context.Context) (*agentClient, error), bindAll bool, log *slog.Logger, notify func(string, error)) *portManager {
	return &portManager{ctx: ctx, agent: agent, bindAll: bindAll, log: log, notify: notify, forwards: map[string]*forward{}, retryEvery: failedRetry}
}

// follow applies every list the agent sends on this session until the stream ends. The
// first list of a session is the guest's full state, so a reconnect re-syncs everything.
func (m *portManager) follow(ctx context.Context, agent *agentClient) error {
	return followUpdates(ctx, agent, proto.TypePorts, m.log, m.sync)
}

// sync opens forwards for new ports and closes the ones that went away. A port that
// failed to bind is retried on every list, so freeing the host port and re-publishing
// heals it.
func (m *portManager) sync(list []proto.Port) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.last = list
	want := map[string]proto.Port{}
	hostPort := map[string]int{}
	for _, p := range list {
		if !m.fixedPort(p) {
			want[p.Key()] = p
			hostPort[p.Key()] = p.Port
		}
	}
	for _, f := range m.fixed {
		want[f.Guest.Key()] = f.Guest
		hostPort[f.Guest.Key()] = f.HostPort
	}
	for k, f := range m.forwards {
		if _, ok := want[k]; !ok {
			f.closeFn()
			delete(m.forwards, k)
			m.log.Info("port closed", "port", k)
		}
	}
	for k, p := range want {
		if f, ok := m.forwards[k]; ok && f.state == "active" {
			continue
		}
		old := m.forwards[k]
		f := &forward{port: p, hostIP: HostBindIP(p.GuestIP, m.bindAll), hostPort: hostPort[k], closeFn: func() {}}
		if p.Source == proto.PortSourceRegistry {
			f.hostIP = "127.0.0.1" // the registry's API stays on loopback, whatever portBindAddress says
		}
		if err := m.open(f); err != nil {
			f.state, f.err = "failed", err.Error()
			if old == nil || old.err != f.err { // a retry that fails the same way is not news
				m.log.Warn("port forward failed", "port", k, "err", err)
				m.notify("", fmt.Errorf("port %s/%d: %w", p.Proto, f.hostPort, err))
			}
		} else {
			f.state = "active"
			m.log.Info("port forwarded", "port", k, "host", net.JoinHostPort(f.hostIP, strconv.Itoa(f.hostPort)))
		}
		m.forwards[k] = f
		if f.state == "failed" && m.retry == nil {
			m.retry = time.AfterFunc(m.retryEvery, m.retryFailed)
		}
	}
}

// fixedPort says whether p is a guest port one of hostd's own forwards covers.
func (m *portManager) fixedPort(p proto.Port) bool {
	for _, f := range m.fixed {
		if p.Proto == f.Guest.Proto && p.Port == f.Guest.Port {
			return true
		}
	}
	return false
}

// retryFailed applies the latest list again, which retries every failed forward.
func (m *portManager) retryFailed() {
	m.mu.Lock()
	m.retry = nil
	last, closed := m.last, m.closed
	m.mu.Unlock()
	if !closed && m.ctx.Err() == nil {
		m.sync(last)
	}
}

func (m *portManager) open(f *forward) error {
	addr := net.JoinHostPort(f.hostIP, strconv.Itoa(f.hostPort))
	// "tcp6"/"udp6" make a wildcard IPv6 socket v6-only, so [::]:P and 0.0.0.0:P (docker
	// publishes both for `-p P:...`) bind side by side instead of the second failing.
	family := "4"
	if ip := net.ParseIP(f.hostIP); ip != nil && ip.To4() == nil {
		family = "6"
	}
	switch f.port.Proto {
	case "tcp":
		ln, err := net.Listen("tcp"+family, addr)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(m.ctx)
		done := make(chan struct{})
		f.closeFn = func() { cancel(); ln.Close(); <-done }
		go func() {
			defer close(done)
			m.serveTCP(ctx, ln, f.port)
		}()
	case "udp":
		pc, err := net.ListenPacket("udp"+family, addr)
		if err != nil {
			return err
		}
		done := make(chan struct{})
		f.closeFn = func() { pc.Close(); <-done }
		go func() {
			defer close(done)
			m.serveUDP(pc.(*net.UDPConn), f.port)
		}()
	default:
		return fmt.Errorf("unknown protocol %q", f.port.Proto)
	}
	return nil
}

// serveTCP forwards each connection as its own agent stream, not through the user-mode
// network stack: a stream is a memcpy away from the guest's loopback. Connections end with
// ctx (the forward closed) or when either side leaves.
func (m *portManager) serveTCP(ctx context.Context, ln net.Listener, p proto.Port) {
	proto.AcceptLoop(ctx, ln, m.log, func(c net.Conn) {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if m.hold != nil {
			defer m.hold(octx)()
		}
		agent, err := m.agent(octx)
		var st *yamux.Stream
		if err == nil {
			st, _, err = agent.open(octx, proto.Request{Type: proto.TypeForward, IP: p.GuestIP, Port: p.Port})
		}
		if err != nil {
			m.log.Debug("forward refused", "port", p.Port, "err", err)
			c.Close()
			return
		}
		proto.Pipe(ctx, c.(*net.TCPConn), agent.stream(st))
	})
}

// serveUDP gives each host peer its own agent stream (so replies find their way back),
// closed after udpIdle without traffic.
func (m *portManager) serveUDP(pc *net.UDPConn, p proto.Port) {
	type session struct {
		st   *yamux.Stream
		last time.Time
	}
	var mu sync.Mutex
	sessions := map[string]*session{}
	defer func() {
		mu.Lock()
		for _, s := range sessions {
			s.st.Close()
		}
		mu.Unlock()
	}()
	stop := make(chan struct{})
	var expiry sync.WaitGroup
	expiry.Add(1)
	defer func() { close(stop); expiry.Wait() }()
	go func() { // idle expiry
		defer expiry.Done()
		t := time.NewTicker(udpIdle / 4)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			mu.Lock()
			if sessions == nil {
				mu.Unlock()
				return
			}
			for k, s := range sessions {
				if time.Since(s.last) > udpIdle {
					s.st.Close()
					delete(sessions, k)
				}
			}
			mu.Unlock()
		}
	}()
	buf := make([]byte, 65535)
	for {
		n, peer, err := pc.ReadFromUDP(buf)
		if err != nil {
			mu.Lock()
			for _, s := range sessions {
				s.st.Close()
			}
			sessions = nil
			mu.Unlock()
			return
		}
		key := peer.String()
		mu.Lock()
		s := sessions[key]
		mu.Unlock()
		if s == nil {
			ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
			agent, err := m.agent(ctx)
			var st *yamux.Stream
			if err == nil {
				st, _, err = agent.open(ctx, proto.Request{Type: proto.TypeUDP, IP: p.GuestIP, Port: p.Port})
			}
			cancel()
			if err != nil {
				continue
			}
			s = &session{st: st}
			mu.Lock()
			if sessions == nil {
				mu.Unlock()
				st.Close()
				return
			}
			sessions[key] = s
			mu.Unlock()
			go func() {
				for {
					kind, payload, err := proto.ReadFrame(st)
					if err != nil {
						return
					}
					if kind == proto.FrameDatagramFromGuest {
						pc.WriteToUDP(payload, peer)
					}
				}
			}()
		}
		mu.Lock()
		s.last = time.Now()
		mu.Unlock()
		if m.hold != nil {
			m.hold(context.Background())() // a datagram is activity, and wakes a paused VM
		}
		if err := proto.WriteFrame(s.st, proto.FrameDatagramToGuest, buf[:n]); err != nil && !errors.Is(err, io.EOF) {
			s.st.Close()
			mu.Lock()
			delete(sessions, key)
			mu.Unlock()
		}
	}
}

// list returns the forwards for the API, sorted.
func (m *portManager) list() []api.PortForward {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []api.PortForward{}
	for _, f := range m.forwards {
		out = append(out, api.PortForward{
			Proto: f.port.Proto, HostIP: f.hostIP, HostPort: f.hostPort, GuestIP: f.port.GuestIP,
			GuestPort: f.port.Port, Container: f.port.Container, Source: f.port.Source,
			State: f.state, Error: f.err,
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].HostPort != out[j].HostPort {
			return out[i].HostPort < out[j].HostPort
		}
		return out[i].Proto+out[i].HostIP < out[j].Proto+out[j].HostIP
	})
	return out
}

// closeAll releases every host port.
func (m *portManager) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.retry != nil {
		m.retry.Stop()
		m.retry = nil
	}
	for k, f := range m.forwards {
		f.closeFn()
		delete(m.forwards, k)
	}
}
