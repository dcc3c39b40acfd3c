//go:build darwin || linux

package clusternet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containers/gvisor-tap-vsock/pkg/tap"
	"github.com/containers/gvisor-tap-vsock/pkg/types"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// nullGatewayMAC is the switch's gateway port. No member uses it (member MACs are
// 5a:94:ef:77:X:N), so frames reach it only as broadcasts, which it drops.
const nullGatewayMAC = "5a:94:ef:77:00:00"

// nullGateway is the switch's gateway port: a device that drops every frame. tap.Switch
// needs one; giving it no stack means nothing on the cluster network is routed or NAT'ed.
type nullGateway struct{ mac tcpip.LinkAddress }

func (g nullGateway) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (g nullGateway) LinkAddress() tcpip.LinkAddress                                        { return g.mac }
func (g nullGateway) IP() string                                                            { return "" }

// Switch is one cluster's layer-2 switch.
type Switch struct {
	log *slog.Logger
	sw  *tap.Switch

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	links map[string]*link // by member
	wg    sync.WaitGroup
}

// NewSwitch returns an empty switch. A nil log discards.
func NewSwitch(log *slog.Logger) *Switch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mac, _ := net.ParseMAC(nullGatewayMAC)
	sw := tap.NewSwitch(false)
	sw.Connect(nullGateway{mac: tcpip.LinkAddress(mac)})
	ctx, cancel := context.WithCancel(context.Background())
	return &Switch{log: log, sw: sw, ctx: ctx, cancel: cancel, links: map[string]*link{}}
}

// Attach connects member's end of a datagram socketpair (one ethernet frame per datagram)
// to the switch, replacing the member's previous link. Frames whose source MAC is not mac
// are dropped, so a member cannot pose as another. The switch owns f from the call on; the
// link ends when ctx ends, the peer end is closed, or the switch is closed.
func (s *Switch) Attach(ctx context.Context, member, mac string, f *os.File) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		f.Close()
		return fmt.Errorf("invalid MAC %q for member %s", mac, member)
	}
	c, err := net.FileConn(f) // dups the fd
	f.Close()
	if err != nil {
		return fmt.Errorf("failed to use the link of member %s: %w", member, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("the link of member %s is not a unix socket", member)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return err
	}
	if typ, err := sockType(rc); err != nil || typ != syscall.SOCK_DGRAM {
		uc.Close()
		return fmt.Errorf("the link of member %s is not a datagram socket", member)
	}
	l := &link{UnixConn: uc, rc: rc, member: member, mac: hw}

	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		uc.Close()
		return errors.New("cluster switch closed")
	}
	if old := s.links[member]; old != nil {
		old.cancel()
	}
	lctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	s.links[member] = l
	s.wg.Add(1)
	s.mu.Unlock()

	stopOnClose := context.AfterFunc(s.ctx, cancel)
	// The switch checks ctx only between reads: closing the socket unblocks it.
	context.AfterFunc(lctx, func() { uc.Close() })
	go func() {
		defer s.wg.Done()
		defer stopOnClose()
		defer cancel()
		defer func() {
			s.mu.Lock()
			if s.links[member] == l {
				delete(s.links, member)
			}
			s.mu.Unlock()
		}()
		s.log.Info("member attached", "member", member, "mac", hw.String())
		err := s.sw.Accept(lctx, l, types.BessProtocol)
		if err != nil && lctx.Err() == nil {
			s.log.Warn("member link failed", "member", member, "err", err)
		}
		s.log.Info("member detached", "member", member, "dropped", l.dropped.Load())
	}()
	return nil
}

// Detach ends member's link, if any.
func (s *Switch) Detach(member string) {
	s.mu.Lock()
	l := s.links[member]
	s.mu.Unlock()
	if l != nil {
		l.cancel()
	}
}

// Links lists the attached members, sorted by name.
func (s *Switch) Links() []LinkStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LinkStatus, 0, len(s.links))
	for _, l := range s.links {
		out = append(out, LinkStatus{Member: l.member, MAC: l.mac.String(), Dropped: l.dropped.Load()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Member < out[j].Member })
	return out
}

// Close detaches every member and waits for their goroutines.
func (s *Switch) Close() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// link is one member's port. Reads drop frames with a foreign source MAC; writes never
// block: a member whose socket buffer is full (a paused or busy VM) loses the frame, as on
// a congested switch port, instead of stalling the switch for every other member
// (tap.Switch writes under one lock).
type link struct {
	*net.UnixConn
	rc      syscall.RawConn
	member  string
	mac     net.HardwareAddr
	cancel  context.CancelFunc
	dropped atomic.Uint64
}

func (l *link) Read(b []byte) (int, error) {
	for {
		n, err := l.UnixConn.Read(b)
		if err != nil {
			return n, err
		}
		if n >= 14 && bytes.Equal(b[6:12], l.mac) {
			return n, nil
		}
		l.dropped.Add(1)
	}
}

func (l *link) Write(b []byte) (int, error) {
	var n int
	var werr error
	err := l.rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(werr, syscall.EAGAIN) || errors.Is(werr, syscall.ENOBUFS) {
		l.dropped.Add(1)
		return len(b), nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

func sockType(rc syscall.RawConn) (int, error) {
	var typ int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		typ, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
	}); err != nil {
		return 0, err
	}
	return typ, serr
}
