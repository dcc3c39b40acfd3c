// Package netproxy runs the guest's network inside the berth host daemon: gvisor-tap-vsock's
// userspace virtual network (a switch, a gateway with DHCP and DNS, NAT from HostIP to the host's
// 127.0.0.1). Guest connections to the outside leave through the host's own sockets, so host
// VPNs, proxies and firewalls apply to them as to any host process.
//
// netproxy opens no host-side listener: no gvproxy HTTP API and no gvisor port forwards. Ports
// published to the host travel over the agent channel instead.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/containers/gvisor-tap-vsock/pkg/virtualnetwork"
)

// ErrClosed is returned by a Network's methods after Close.
var ErrClosed = errors.New("netproxy: network closed")

// Network is one virtual network serving one VM.
type Network struct {
	cfg Config
	log *slog.Logger
	vn  *virtualnetwork.VirtualNetwork

	ctx    context.Context // done once Close is called
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	links  sync.WaitGroup
}

// New validates cfg (zero fields take their defaults) and builds the network. Nothing is served
// until a VM link is attached. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Network, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid network config: %w", err)
	}
	gcfg, err := cfg.gvisorConfig()
	if err != nil {
		return nil, err
	}
	vn, err := virtualnetwork.New(gcfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create virtual network %s: %w", cfg.Subnet, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log.Info("virtual network ready", "subnet", cfg.Subnet, "gateway", cfg.GatewayIP,
		"guest", cfg.GuestIP, "guest_mac", cfg.GuestMAC, "host", cfg.HostIP, "mtu", cfg.MTU)
	return &Network{cfg: cfg, log: log, vn: vn, ctx: ctx, cancel: cancel}, nil
}

// Close detaches every VM link and waits for their goroutines. gvisor-tap-vsock v0.8.9 has no way to stop its stack, so
// the (idle) gateway DHCP/DNS goroutines stay until the process exits; hostd runs one Network
// per process, so that is bounded. Close is idempotent.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	n.links.Wait()
	return nil
}

// serve switches frames between conn (one ethernet frame per datagram) and the virtual network
// until ctx ends, the Network is closed, or the link fails. It owns conn from the call on.
func (n *Network) serve(ctx context.Context, conn net.Conn, kind string) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		_ = conn.Close()
		return ErrClosed
	}
	n.links.Add(1)
	n.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(n.ctx, cancel)
	// The switch only checks ctx between reads: closing conn is what unblocks it.
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	go func() {
		defer n.links.Done()
		defer stopOnClose()
		defer cancel()
		n.log.Debug("vm link attached", "kind", kind)
		err := n.vn.AcceptBess(ctx, conn)
		if err != nil && ctx.Err() == nil {
			n.log.Warn("vm link failed", "kind", kind, "err", err)
			return
		}
		n.log.Debug("vm link detached", "kind", kind)
	}()
	return nil
}
