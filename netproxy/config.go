package netproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/containers/gvisor-tap-vsock/pkg/types"
)

// gatewayMAC is the virtual gateway's MAC (gvproxy's default). Nothing outside netproxy needs it:
// the guest learns it by ARP.
const gatewayMAC = "5a:94:ef:e4:0c:dd"

// Config describes the virtual network. A zero field takes its default; IPs left empty are
// derived from Subnet (gateway = first host address, guest = second, host = last), so changing
// only Subnet is enough to move the whole network.
type Config struct {
	Subnet    string // default "192.168.127.0/24"
	GatewayIP string // default "192.168.127.1": DHCP server, router and DNS server of the guest
	GuestIP   string // default "192.168.127.2": a static DHCP lease for GuestMAC
	GuestMAC  string // default "5a:94:ef:e4:0c:ee"
	HostIP    string // default "192.168.127.254": NAT'ed to the host's 127.0.0.1
	MTU       int    // default 1500
}

// DefaultConfig returns the configuration every field of which has its default.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.Subnet == "" {
		c.Subnet = proto.Subnet
	}
	if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Addr().Is4() && p.Bits() <= maxPrefixBits {
		p = p.Masked()
		first := p.Addr().Next()
		if c.GatewayIP == "" {
			c.GatewayIP = first.String()
		}
		if c.GuestIP == "" {
			c.GuestIP = first.Next().String()
		}
		if c.HostIP == "" {
			c.HostIP = broadcast(p).Prev().String()
		}
	}
	if c.GuestMAC == "" {
		c.GuestMAC = "5a:94:ef:e4:0c:ee"
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	return c
}

// maxPrefixBits leaves room for network, gateway, guest, host and broadcast addresses.
const maxPrefixBits = 29

// Validate reports whether the configuration (with defaults applied) is usable: the subnet is an
// IPv4 network, the three IPs are distinct host addresses inside it, and the MAC is a unicast
// EUI-48 other than the gateway's.
func (c Config) Validate() error {
	c = c.withDefaults()
	p, err := netip.ParsePrefix(c.Subnet)
	if err != nil {
		return fmt.Errorf("invalid subnet %q: %w", c.Subnet, err)
	}
	if !p.Addr().Is4() || p.Bits() > maxPrefixBits {
		return fmt.Errorf("invalid subnet %q: must be an IPv4 network of /%d or larger", c.Subnet, maxPrefixBits)
	}
	p = p.Masked()
	seen := map[netip.Addr]string{}
	for _, f := range []struct{ name, value string }{
		{"gateway IP", c.GatewayIP}, {"guest IP", c.GuestIP}, {"host IP", c.HostIP},
	} {
		a, err := netip.ParseAddr(f.value)
		if err != nil {
			return fmt.Errorf("invalid %s %q: %w", f.name, f.value, err)
		}
		if !a.Is4() || !p.Contains(a) || a == p.Addr() || a == broadcast(p) {
			return fmt.Errorf("invalid %s %q: must be a host address inside %s", f.name, f.value, p)
		}
		if other, dup := seen[a]; dup {
			return fmt.Errorf("invalid %s %q: same address as the %s", f.name, f.value, other)
		}
		seen[a] = f.name
	}
	mac, err := net.ParseMAC(c.GuestMAC)
	if err != nil {
		return fmt.Errorf("invalid guest MAC %q: %w", c.GuestMAC, err)
	}
	if len(mac) != 6 || mac[0]&1 != 0 {
		return fmt.Errorf("invalid guest MAC %q: must be a unicast 48-bit address", c.GuestMAC)
	}
	if mac.String() == gatewayMAC {
		return fmt.Errorf("invalid guest MAC %q: reserved for the gateway", c.GuestMAC)
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return fmt.Errorf("invalid MTU %d: must be between 576 and 65535", c.MTU)
	}
	return nil
}

// broadcast returns the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])|^uint32(0)>>p.Bits())
	return netip.AddrFrom4(a)
}

// gvisorConfig translates a validated, defaulted Config into gvisor-tap-vsock's configuration.
func (c Config) gvisorConfig() (*types.Configuration, error) {
	mac, err := net.ParseMAC(c.GuestMAC)
	if err != nil {
		return nil, errors.New("guest MAC must be validated first")
	}
	zone := func(name string) types.Zone {
		return types.Zone{Name: name, Records: []types.Record{
			{Name: "host", IP: net.ParseIP(c.HostIP)},
			{Name: "gateway", IP: net.ParseIP(c.GatewayIP)},
		}}
	}
	return &types.Configuration{
		MTU:               c.MTU,
		Subnet:            c.Subnet,
		GatewayIP:         c.GatewayIP,
		GatewayMacAddress: gatewayMAC,
		// Zone names are fully qualified: the DNS server matches them as suffixes of the query
		// name. A name inside a zone without a record gets NXDOMAIN; any other name is answered
		// through the host's own resolver (net.Resolver), so VPN and split DNS keep working.
		DNS: []types.Zone{zone("docker.internal."), zone("berth.internal.")},
		DHCPStaticLeases: map[string]string{
			// The pool compares MACs in net.HardwareAddr.String() form: normalise the case.
			c.GuestIP: mac.String(),
			// Keeps the pool from ever leasing HostIP to a second NIC.
			c.HostIP: gatewayMAC,
		},
		NAT:               map[string]string{c.HostIP: "127.0.0.1"},
		GatewayVirtualIPs: []string{c.HostIP}, // the gateway answers ARP for HostIP
		// No Forwards: host→guest ports go over the agent channel, never through gvisor.
		Forwards: map[string]string{},
	}, nil
}
