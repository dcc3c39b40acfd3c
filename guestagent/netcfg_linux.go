//go:build linux

package guestagent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

const (
	// dhcpTimeout bounds the whole network setup. gvisor-tap-vsock answers at once; the
	// margin is for TCG, where everything is slow.
	dhcpTimeout = 10 * time.Second
	// dhcpAttempt bounds one DISCOVER/REQUEST exchange before it is retried.
	dhcpAttempt = 2 * time.Second
	resolvConf  = "/run/resolv.conf" // /etc/resolv.conf in the root image links here
	linkTimeout = 2 * time.Second
)

// setupNetworkingBase brings the loopback interface up.
func setupNetworkingBase(log *slog.Logger) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("failed to find the loopback interface: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("failed to bring the loopback interface up: %w", err)
	}
	return nil
}

// linkInfo is what pickInterface needs to know about a network interface.
type linkInfo struct {
	Index int
	Name  string
	Type  string // netlink link type: "device" for a NIC, "veth", "bridge", …
	Encap string // "ether", "loopback", …
}

// pickInterface returns the NIC to configure: eth0 if present, else the first ethernet
// device (virtio-net is named eth0 without udev, but a hypervisor could give it another).
func pickInterface(links []linkInfo) (string, bool) {
	slices.SortFunc(links, func(a, b linkInfo) int { return cmp.Compare(a.Index, b.Index) })
	for _, l := range links {
		if l.Name == "eth0" {
			return l.Name, true
		}
	}
	for _, l := range links {
		if l.Encap == "ether" && l.Type == "device" {
			return l.Name, true
		}
	}
	return "", false
}

// findInterface waits briefly for the NIC: virtio-net is probed asynchronously.
func findInterface(ctx context.Context) (netlink.Link, error) {
	ctx, cancel := context.WithTimeout(ctx, linkTimeout)
	defer cancel()
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("failed to list network interfaces: %w", err)
		}
		var infos []linkInfo
		for _, l := range links {
			a := l.Attrs()
			infos = append(infos, linkInfo{Index: a.Index, Name: a.Name, Type: l.Type(), Encap: a.EncapType})
		}
		if name, ok := pickInterface(infos); ok {
			return netlink.LinkByName(name)
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// netConfig is an IPv4 configuration taken from a DHCP lease.
type netConfig struct {
	Addr    net.IPNet
	Gateway net.IP
	DNS     []net.IP
	Search  []string
	MTU     int // 0: leave the interface's MTU alone
}

// leaseConfig extracts the configuration from a DHCP ACK.
func leaseConfig(ack *dhcpv4.DHCPv4) (netConfig, error) {
	var c netConfig
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() {
		return c, errors.New("DHCP lease has no IPv4 address")
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ip.DefaultMask()
	}
	c.Addr = net.IPNet{IP: ip, Mask: mask}
	if r := ack.Router(); len(r) > 0 {
		c.Gateway = r[0].To4()
	}
	c.DNS = ack.DNS()
	if s := ack.DomainSearch(); s != nil {
		c.Search = append(c.Search, s.Labels...)
	}
	if d := ack.DomainName(); d != "" && !slices.Contains(c.Search, d) {
		c.Search = append(c.Search, d)
	}
	if mtu, err := dhcpv4.GetUint16(dhcpv4.OptionInterfaceMTU, ack.Options); err == nil && mtu >= 576 {
		c.MTU = int(mtu)
	}
	return c, nil
}

// renderResolvConf writes the resolver configuration for a lease. glibc reads at most
// three name servers and six search domains.
func renderResolvConf(c netConfig) []byte {
	var b strings.Builder
	b.WriteString("# written by berth-agent from the DHCP lease\n")
	n := 0
	for _, ip := range c.DNS {
		if ip == nil || ip.IsUnspecified() || n == 3 {
			continue
		}
		fmt.Fprintf(&b, "nameserver %s\n", ip)
		n++
	}
	search := c.Search
	if len(search) > 6 {
		search = search[:6]
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	return []byte(b.String())
}

// configureNetwork runs DHCP on the guest's NIC and applies the lease. It returns the
// address; no NIC at all is not an error (the guest works without a network). The
// address is installed without a lifetime and the lease is not renewed: the only DHCP
// server is the host's own network stack, which never gives the address to anyone else.
func configureNetwork(ctx context.Context, log *slog.Logger) (string, error) {
	link, err := findInterface(ctx)
	if err != nil {
		return "", err
	}
	if link == nil {
		log.Warn("no network interface; continuing without a network")
		return "", nil
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return "", fmt.Errorf("failed to bring %s up: %w", name, err)
	}
	// The DHCP library takes its transaction IDs from getrandom(2) and spins until the
	// kernel's random pool is initialised, which without a virtio-rng device takes
	// minutes under TCG. A transaction ID only needs to be unlikely to repeat:
	// /dev/urandom is fine. The library reads this variable once, on first use.
	os.Setenv("UROOT_NOHWRNG", "1")
	ack, err := dhcpLease(ctx, log, name)
	os.Unsetenv("UROOT_NOHWRNG")
	if err != nil {
		return "", err
	}
	c, err := leaseConfig(ack)
	if err != nil {
		return "", err
	}
	if c.MTU > 0 && c.MTU != link.Attrs().MTU {
		if err := netlink.LinkSetMTU(link, c.MTU); err != nil {
			log.Warn("failed to set the MTU from the lease", "interface", name, "mtu", c.MTU, "err", err)
		}
	}
	addr := &netlink.Addr{IPNet: &c.Addr, Broadcast: broadcast(c.Addr)}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return "", fmt.Errorf("failed to set address %s on %s: %w", c.Addr.String(), name, err)
	}
	if c.Gateway != nil {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: c.Gateway,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
		if err := netlink.RouteReplace(route); err != nil {
			return "", fmt.Errorf("failed to add the default route via %s: %w", c.Gateway, err)
		}
	}
	if err := writeFileAtomic(resolvConf, renderResolvConf(c), 0o644); err != nil {
		return "", fmt.Errorf("failed to write %s: %w", resolvConf, err)
	}
	log.Info("network configured", "interface", name, "address", c.Addr.String(), "gateway", c.Gateway,
		"dns", c.DNS, "search", c.Search, "mtu", c.MTU)
	return c.Addr.IP.String(), nil
}

func broadcast(n net.IPNet) net.IP {
	ip := n.IP.To4()
	if ip == nil || len(n.Mask) != 4 {
		return nil
	}
	b := make(net.IP, 4)
	for i := range b {
		b[i] = ip[i] | ^n.Mask[i]
	}
	return b
}

// dhcpLease runs DISCOVER/OFFER/REQUEST/ACK until it gets a lease or ctx ends.
func dhcpLease(ctx context.Context, log *slog.Logger, iface string) (*dhcpv4.DHCPv4, error) {
	var lastErr error
	for attempt := 1; ; attempt++ {
		ack, err := dhcpOnce(ctx, iface)
		if err == nil {
			return ack, nil
		}
		lastErr = err
		log.Debug("DHCP attempt failed", "interface", iface, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no DHCP lease on %s: %w", iface, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func dhcpOnce(ctx context.Context, iface string) (*dhcpv4.DHCPv4, error) {
	c, err := nclient4.New(iface, nclient4.WithTimeout(dhcpAttempt), nclient4.WithRetry(1))
	if err != nil {
		return nil, fmt.Errorf("failed to open a DHCP client on %s: %w", iface, err)
	}
	defer c.Close()
	lease, err := c.Request(ctx, dhcpv4.WithRequestedOptions(
		dhcpv4.OptionInterfaceMTU, dhcpv4.OptionDNSDomainSearchList))
	if err != nil {
		return nil, err
	}
	return lease.ACK, nil
}
