//go:build darwin || linux

package netproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// attach starts a Network with cfg and returns the VM end of a datagram link as a net.Conn (for
// deadlines), as a VM would hold it.
func attach(t *testing.T, cfg Config) (*Network, net.Conn) {
	t.Helper()
	n, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	vm, err := n.AttachDatagram(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.FileConn(vm)
	_ = vm.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return n, conn
}

// TestDHCP plays a guest's DHCP client with hand-built frames: DISCOVER → OFFER, REQUEST → ACK.
func TestDHCP(t *testing.T) {
	cfg := DefaultConfig()
	// Not the pool's next free address, and a MAC in upper case: the offer must come from the
	// static lease, matched case-insensitively.
	cfg.GuestIP = "192.168.127.5"
	cfg.GuestMAC = "5A:94:EF:E4:0C:EE"
	_, vm := attach(t, cfg)
	mac, _ := net.ParseMAC(cfg.GuestMAC)
	gateway := net.ParseIP(cfg.GatewayIP).To4()

	discover, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	offer := dhcpExchange(t, vm, mac, discover)
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %s, want an OFFER", offer.MessageType())
	}
	checkLease(t, cfg, offer, gateway)

	request, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack := dhcpExchange(t, vm, mac, request)
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatalf("got %s, want an ACK", ack.MessageType())
	}
	checkLease(t, cfg, ack, gateway)
}

func checkLease(t *testing.T, cfg Config, m *dhcpv4.DHCPv4, gateway net.IP) {
	t.Helper()
	if got := m.YourIPAddr.String(); got != cfg.GuestIP {
		t.Errorf("%s offers %s, want %s", m.MessageType(), got, cfg.GuestIP)
	}
	if r := m.Router(); len(r) != 1 || !r[0].Equal(gateway) {
		t.Errorf("%s router = %v, want %s", m.MessageType(), r, gateway)
	}
	if d := m.DNS(); len(d) != 1 || !d[0].Equal(gateway) {
		t.Errorf("%s DNS = %v, want %s", m.MessageType(), d, gateway)
	}
	if ones, _ := m.SubnetMask().Size(); ones != 24 {
		t.Errorf("%s subnet mask /%d, want /24", m.MessageType(), ones)
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, m.Options); err != nil || int(mtu) != cfg.MTU {
		t.Errorf("%s MTU = %d (%v), want %d", m.MessageType(), mtu, err, cfg.MTU)
	}
}

// dhcpExchange broadcasts msg from 0.0.0.0:68 and returns the server's reply to it.
func dhcpExchange(t *testing.T, vm net.Conn, mac net.HardwareAddr, msg *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	frame := udpFrame(mac, net.HardwareAddr(header.EthernetBroadcastAddress),
		netip.MustParseAddrPort("0.0.0.0:68"), netip.MustParseAddrPort("255.255.255.255:67"), msg.ToBytes())
	if _, err := vm.Write(frame); err != nil {
		t.Fatalf("write DHCP %s: %v", msg.MessageType(), err)
	}
	if err := vm.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	for {
		n, err := vm.Read(buf)
		if err != nil {
			t.Fatalf("no reply to DHCP %s: %v", msg.MessageType(), err)
		}
		payload, ok := udpPayload(buf[:n], 68)
		if !ok {
			continue
		}
		reply, err := dhcpv4.FromBytes(payload)
		if err != nil {
			t.Fatalf("parse DHCP reply: %v", err)
		}
		if reply.TransactionID == msg.TransactionID {
			return reply
		}
	}
}

// udpFrame builds Ethernet/IPv4/UDP around payload. The UDP checksum is left zero ("none"),
// which IPv4 allows.
func udpFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.AddrPort, payload []byte) []byte {
	const hdrs = header.EthernetMinimumSize + header.IPv4MinimumSize + header.UDPMinimumSize
	b := make([]byte, hdrs+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(srcMAC),
		DstAddr: tcpip.LinkAddress(dstMAC),
		Type:    header.IPv4ProtocolNumber,
	})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)),
		TTL:         64,
		Protocol:    uint8(header.UDPProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src.Addr().As4()),
		DstAddr:     tcpip.AddrFrom4(dst.Addr().As4()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{
		SrcPort: src.Port(),
		DstPort: dst.Port(),
		Length:  uint16(len(u)),
	})
	copy(u.Payload(), payload)
	return b
}

// udpPayload returns the payload of frame if it is IPv4/UDP to dstPort.
func udpPayload(frame []byte, dstPort uint16) ([]byte, bool) {
	if len(frame) < header.EthernetMinimumSize || header.Ethernet(frame).Type() != header.IPv4ProtocolNumber {
		return nil, false
	}
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.UDPProtocolNumber {
		return nil, false
	}
	u := header.UDP(ip.Payload())
	if len(u) < header.UDPMinimumSize || u.DestinationPort() != dstPort {
		return nil, false
	}
	return u.Payload(), true
}

// guestStack plays the VM: a second gVisor stack with the guest's MAC and a static GuestIP,
// whose NIC is the VM end of the datagram link.
func guestStack(t *testing.T, cfg Config, vm net.Conn) *stack.Stack {
	t.Helper()
	mac, _ := net.ParseMAC(cfg.GuestMAC)
	link := channel.New(256, uint32(cfg.MTU), tcpip.LinkAddress(mac))
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	t.Cleanup(func() { s.Close(); s.Wait() })
	if err := s.CreateNIC(1, ethernet.New(link)); err != nil {
		t.Fatalf("create guest NIC: %s", err)
	}
	prefix := netip.MustParsePrefix(cfg.Subnet)
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   addr(cfg.GuestIP),
			PrefixLen: prefix.Bits(),
		},
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("add guest address: %s", err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: addr(cfg.GatewayIP), NIC: 1}})

	ctx := t.Context()
	go func() { // guest → network
		for {
			pkt := link.ReadContext(ctx)
			if pkt == nil {
				return
			}
			frame := pkt.ToView().AsSlice()
			pkt.DecRef()
			if _, err := vm.Write(frame); err != nil {
				return
			}
		}
	}()
	go func() { // network → guest
		buf := make([]byte, 65536)
		for {
			n, err := vm.Read(buf)
			if err != nil {
				return
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
				Payload: buffer.MakeWithData(bytes.Clone(buf[:n])),
			})
			link.InjectInbound(0, pkt) // the ethernet endpoint reads the type from the frame
			pkt.DecRef()
		}
	}()
	return s
}

func addr(ip string) tcpip.Address {
	return tcpip.AddrFrom4(netip.MustParseAddr(ip).As4())
}

// TestGuestTraffic runs a real TCP/IP stack as the guest on the datagram link and checks DNS
// zones, NAT to the host's loopback, and a host dial to a guest port through the stack.
func TestGuestTraffic(t *testing.T) {
	cfg := DefaultConfig()
	n, vm := attach(t, cfg)
	guest := guestStack(t, cfg, vm)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	t.Run("DNS", func(t *testing.T) {
		conn, err := gonet.DialUDP(guest, nil, &tcpip.FullAddress{NIC: 1, Addr: addr(cfg.GatewayIP), Port: 53}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		dc := &dns.Conn{Conn: conn}
		for _, tt := range []struct {
			name, want string
			rcode      int
		}{
			{"host.docker.internal.", cfg.HostIP, dns.RcodeSuccess},
			{"host.berth.internal.", cfg.HostIP, dns.RcodeSuccess},
			{"gateway.docker.internal.", cfg.GatewayIP, dns.RcodeSuccess},
			{"gateway.berth.internal.", cfg.GatewayIP, dns.RcodeSuccess},
			{"nothing.berth.internal.", "", dns.RcodeNameError},
		} {
			q := new(dns.Msg).SetQuestion(tt.name, dns.TypeA)
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if err := dc.WriteMsg(q); err != nil {
				t.Fatalf("query %s: %v", tt.name, err)
			}
			r, err := dc.ReadMsg()
			if err != nil {
				t.Fatalf("answer for %s: %v", tt.name, err)
			}
			if r.Rcode != tt.rcode {
				t.Errorf("%s: rcode %s, want %s", tt.name, dns.RcodeToString[r.Rcode], dns.RcodeToString[tt.rcode])
			}
			var got string
			if len(r.Answer) == 1 {
				if a, ok := r.Answer[0].(*dns.A); ok {
					got = a.A.String()
				}
			}
			if got != tt.want {
				t.Errorf("%s = %q (answer %v), want %q", tt.name, got, r.Answer, tt.want)
			}
		}
	})

	t.Run("HostIPReachesHostLoopback", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = c.Write([]byte("hello from the host"))
		}()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		c, err := gonet.DialContextTCP(ctx, guest, tcpip.FullAddress{NIC: 1, Addr: addr(cfg.HostIP), Port: port}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatalf("guest dial %s:%d: %v", cfg.HostIP, port, err)
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello from the host" {
			t.Fatalf("guest read %q, %v", got, err)
		}
	})

	t.Run("HostDialsGuest", func(t *testing.T) {
		ln, err := gonet.ListenTCP(guest, tcpip.FullAddress{NIC: 1, Port: 8080}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(c, c) // echo until the host half-closes
		}()
		c, err := n.vn.DialContextTCP(ctx, net.JoinHostPort(cfg.GuestIP, "8080"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "ping" {
			t.Fatalf("echo = %q, %v", got, err)
		}
	})
}

// junkFrame goes to a MAC nobody has: the switch drops it.
var junkFrame = func() []byte {
	b := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: "\x02\x00\x00\x00\x00\x02", DstAddr: "\x02\x00\x00\x00\x00\x01"})
	return b
}()

// vmEndDetached waits for the host end of the link to go away: a datagram to a closed peer
// fails with ECONNREFUSED.
func vmEndDetached(vm net.Conn) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, err := vm.Write(junkFrame); err != nil {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestAttachEndsWithContext(t *testing.T) {
	n, err := New(DefaultConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithCancel(t.Context())
	f, err := n.AttachDatagram(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if _, err := vm.Write(junkFrame); err != nil {
		t.Fatalf("link failed before its context ended: %v", err)
	}
	cancel()
	if !vmEndDetached(vm) {
		t.Fatal("link still served after its context ended")
	}
}

func TestClose(t *testing.T) {
	n, vm := attach(t, DefaultConfig())
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if !vmEndDetached(vm) {
		t.Fatal("link still served after Close")
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.AttachDatagram(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("AttachDatagram after Close = %v, want ErrClosed", err)
	}
}
