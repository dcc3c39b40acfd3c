package guestagent

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/dockerapi"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/guestagent/proto/pubsub"
)

// Listener policies: which guest listeners that are not published container ports get
// forwarded (`--network host` servers, a server started in `berth shell`).
const (
	ListenersNone   = "none"   // container ports only
	ListenersPublic = "public" // also listeners on 0.0.0.0 / ::
	ListenersAll    = "all"    // also loopback-only listeners
)

// PortWatcher keeps the list of ports the guest wants forwarded: published container ports
// from the engine (its event stream triggers a re-list, so a port shows up as soon as the
// container starts) plus, per policy, listening sockets the kernel reports (sock_diag,
// /proc/net as the fallback).
type PortWatcher struct {
	DockerSocket string
	// Hold keeps the engine awake for a call to it (EngineNap.Hold); nil holds nothing.
	Hold func(why string) (release func())
	// Napping reports whether the engine naps (EngineNap.Napping): then no container can
	// start, and scans slow to scanNap. Nil is never.
	Napping   func() bool
	Listeners string
	Log       *slog.Logger
	// ProcNet, when set, is read instead of the kernel's sockets (sock_diag, else
	// /proc/net): tests point it at fixtures.
	ProcNet string

	mu        sync.Mutex
	container []proto.Port
	listeners []proto.Port
	current   []proto.Port
	updates   pubsub.Topic[[]proto.Port] // KeepLatest: only the latest list matters
	running   containerCount             // for the host's idle pause (activity.go)
	kick      chan struct{}              // set by Run: Kick's way to the listener scan
}

// Subscribe returns a channel that gets the full list now and after every change.
func (w *PortWatcher) Subscribe() (<-chan []proto.Port, func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.updates.Mode = pubsub.KeepLatest
	return w.updates.Subscribe(0, slices.Clone(w.current))
}

// Run follows the engine and the listeners until ctx ends.
func (w *PortWatcher) Run(ctx context.Context) {
	sc := &listenerScanner{procNet: w.ProcNet, loopback: w.Listeners == ListenersAll, log: w.Log}
	if sc.procNet == "" { // the running kernel's sockets, not fixtures
		sc.procNet, sc.diag = "/proc/net", scanSockDiag
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.followEngine(ctx)
	}()
	if w.Listeners == ListenersNone {
		<-ctx.Done()
		return
	}
	// The kernel has no notification for new listening sockets short of eBPF; a scan is a
	// few sock_diag requests, but each wakes an idle guest (under TCG a wake-up costs the
	// host far more than the scan): scans are paced by scanPace.
	kick := make(chan struct{}, 1)
	w.mu.Lock()
	w.kick = kick
	w.mu.Unlock()
	fastUntil := time.Now().Add(scanBurst)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
			fastUntil = time.Now().Add(scanBurst)
		}
		if ls, err := sc.scan(time.Now()); err == nil {
			if w.update(nil, ls) {
				fastUntil = time.Now().Add(scanBurst)
			}
		}
		t.Stop()
		t.Reset(w.scanPace(time.Now(), fastUntil))
	}
}

// Listener scan pacing: every scanFast while something may be starting to listen — for
// scanBurst after the watcher starts, after a scan that found a change, after any engine
// event (a container started, an exec) and after Kick (a `berth shell` command) — every
// scanSlow otherwise, so an idle guest is not woken every second for it, and every scanNap
// while the engine naps (only a process already running, not a new container, could start
// listening then: one left behind by a `berth shell` command that ended at least the nap
// delay before; any client wakes the engine and kicks the scan). Variables for tests.
var (
	scanFast  = time.Second
	scanSlow  = 10 * time.Second
	scanNap   = 5 * time.Minute
	scanBurst = time.Minute
)

// scanPace is the wait before the next listener scan.
func (w *PortWatcher) scanPace(now, fastUntil time.Time) time.Duration {
	switch {
	case w.Napping != nil && w.Napping():
		return scanNap
	case now.Before(fastUntil):
		return scanFast
	}
	return scanSlow
}

// Kick tells the watcher that something may start listening soon (a command started in the
// guest): it scans now and then once a second for a while.
func (w *PortWatcher) Kick() {
	w.mu.Lock()
	k := w.kick
	w.mu.Unlock()
	if k != nil {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// followEngine re-lists containers whenever the engine reports a container event, and
// reconnects when the engine restarts.
func (w *PortWatcher) followEngine(ctx context.Context) {
	c := dockerapi.New(w.DockerSocket)
	defer c.Close()
	for ctx.Err() == nil {
		// Subscribed first, listed second: no start can fall between the two.
		c.ContainerEvents(ctx, func() { w.relist(ctx, c) }, func(ev dockerapi.Event) {
			w.Kick() // a container or an exec in one may be about to listen
			switch strings.SplitN(ev.Action, ":", 2)[0] {
			case "start", "die", "destroy", "pause", "unpause", "restart", "stop", "kill":
				w.relist(ctx, c)
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *PortWatcher) hold(why string) func() {
	if w.Hold == nil {
		return func() {}
	}
	return w.Hold(why)
}

// Recount asks the engine now how many containers run, and records it (TypeActivityCheck).
func (w *PortWatcher) Recount(ctx context.Context) (int, error) {
	defer w.hold("the host's activity check")()
	c := dockerapi.New(w.DockerSocket)
	defer c.Close()
	list, err := c.Containers(ctx, false)
	if err != nil {
		return -1, err
	}
	w.running.set(len(list))
	return len(list), nil
}

func (w *PortWatcher) relist(ctx context.Context, c *dockerapi.Client) {
	defer w.hold("a container event")()
	list, err := c.Containers(ctx, false)
	if err != nil {
		w.Log.Warn("failed to list containers", "err", err)
		w.running.set(-1)
		return
	}
	w.running.set(len(list))
	w.update(ContainerPorts(list), nil)
}

// dockerContainer is a row of the engine's container list.
type dockerContainer = dockerapi.Container

// ContainerPorts turns the engine's container list into published ports.
func ContainerPorts(list []dockerContainer) []proto.Port {
	out := []proto.Port{}
	for _, c := range list {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		for _, p := range c.Ports {
			if p.PublicPort == 0 || (p.Type != "tcp" && p.Type != "udp") {
				continue
			}
			ip := p.IP
			if ip == "" {
				ip = "0.0.0.0"
			}
			out = append(out, proto.Port{Proto: p.Type, GuestIP: ip, Port: p.PublicPort, Container: name, Source: proto.PortSourceContainer})
		}
	}
	return out
}

// update replaces one source's ports (nil keeps it) and publishes the merged list if it
// changed. A listener on a published container port is the engine's proxy: the container
// entry wins.
func (w *PortWatcher) update(container, listeners []proto.Port) (changed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if container != nil {
		w.container = container
	}
	if listeners != nil {
		w.listeners = listeners
	}
	taken := map[string]bool{}
	merged := []proto.Port{}
	for _, p := range w.container {
		if !taken[p.Key()] {
			taken[p.Key()] = true
			taken[fmt.Sprintf("%s/%d", p.Proto, p.Port)] = true
			merged = append(merged, p)
		}
	}
	for _, p := range w.listeners {
		if !taken[fmt.Sprintf("%s/%d", p.Proto, p.Port)] && !taken[p.Key()] {
			taken[p.Key()] = true
			merged = append(merged, p)
		}
	}
	slices.SortFunc(merged, func(a, b proto.Port) int { return cmp.Compare(a.Key(), b.Key()) })
	if slices.Equal(merged, w.current) {
		return false
	}
	w.current = merged
	w.updates.Mode = pubsub.KeepLatest
	w.updates.Publish(slices.Clone(merged))
	return true
}

// listenerScanner finds listening sockets: over NETLINK_SOCK_DIAG (sockdiag_linux.go) when
// diag is set, else, or when that fails, from procNet's text files.
type listenerScanner struct {
	procNet  string
	loopback bool
	diag     func(loopback bool) ([]proto.Port, error) // scanSockDiag; nil: procNet only
	log      *slog.Logger

	diagOffUntil time.Time // after a failure, /proc/net until then
	diagFailed   bool      // the failure was logged
}

// diagRetry is how long the scan reads /proc/net after sock_diag failed before it tries
// sock_diag again. A kernel without a diag handler tries to load its module (an exec of
// modprobe) on every request, so it is not asked every second.
const diagRetry = 10 * time.Minute

func (s *listenerScanner) scan(now time.Time) ([]proto.Port, error) {
	if s.diag != nil && !now.Before(s.diagOffUntil) {
		ls, err := s.diag(s.loopback)
		if err == nil {
			if s.diagFailed && s.log != nil {
				s.log.Info("listener scan: sock_diag works again")
			}
			s.diagFailed = false
			return ls, nil
		}
		if !s.diagFailed && s.log != nil {
			s.log.Info("listener scan: sock_diag failed, reading /proc/net instead (load the inet_diag, tcp_diag and udp_diag modules to avoid it)",
				"err", err, "retryIn", diagRetry)
		}
		s.diagFailed = true
		s.diagOffUntil = now.Add(diagRetry)
	}
	return ScanListeners(s.procNet, s.loopback)
}

// ScanListeners reads /proc/net/{tcp,tcp6,udp,udp6} for listening sockets. Loopback-only
// ones are included only with loopback. The agent asks sock_diag first (scanSockDiag); this
// is its fallback.
func ScanListeners(procNet string, loopback bool) ([]proto.Port, error) {
	out := []proto.Port{}
	seen := map[string]bool{}
	for _, f := range []struct{ file, proto, state string }{
		{"tcp", "tcp", "0A"}, {"tcp6", "tcp", "0A"}, {"udp", "udp", "07"}, {"udp6", "udp", "07"},
	} {
		fh, err := os.Open(procNet + "/" + f.file)
		if err != nil {
			continue
		}
		ports, err := parseProcNet(fh, f.proto, f.state, loopback)
		fh.Close()
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			if !seen[p.Key()] {
				seen[p.Key()] = true
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func parseProcNet(r io.Reader, protoName, listenState string, loopback bool) ([]proto.Port, error) {
	var out []proto.Port
	sc := bufio.NewScanner(r)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[3] != listenState {
			continue
		}
		// Only unconnected UDP sockets are servers.
		if protoName == "udp" && !strings.HasSuffix(f[2], ":0000") {
			continue
		}
		ipHex, portHex, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil || port == 0 {
			continue
		}
		ip, err := parseProcIP(ipHex)
		if err != nil {
			return nil, err
		}
		out = appendListener(out, protoName, ip, int(port), loopback)
	}
	return out, sc.Err()
}

// appendListener appends the forwards for one listening socket (both scans share it): those
// on a wildcard address, and with loopback those on a loopback address.
func appendListener(out []proto.Port, protoName string, ip net.IP, port int, loopback bool) []proto.Port {
	if port == 0 {
		return out
	}
	if ip.IsLoopback() && !loopback {
		return out
	}
	if !ip.IsLoopback() && !ip.IsUnspecified() {
		return out // bound to one guest interface address: not a host-facing service
	}
	out = append(out, proto.Port{Proto: protoName, GuestIP: ip.String(), Port: port, Source: proto.PortSourceListener})
	// A wildcard IPv6 socket also takes IPv4 (net.ipv6.bindv6only is 0), which is how
	// most servers listen: the host gets it on both families.
	if ip.Equal(net.IPv6unspecified) {
		out = append(out, proto.Port{Proto: protoName, GuestIP: "0.0.0.0", Port: port, Source: proto.PortSourceListener})
	} else if ip.Equal(net.IPv6loopback) {
		out = append(out, proto.Port{Proto: protoName, GuestIP: "127.0.0.1", Port: port, Source: proto.PortSourceListener})
	}
	return out
}

// parseProcIP decodes /proc/net's hex address: 32-bit words in host (little-endian) order.
func parseProcIP(s string) (net.IP, error) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b), nil
}

// guestDialAddr is where the agent connects for a forwarded port: a published wildcard is
// reached through loopback.
func guestDialAddr(ip string, port int) string {
	switch ip {
	case "", "0.0.0.0":
		ip = "127.0.0.1"
	case "::":
		ip = "::1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}
