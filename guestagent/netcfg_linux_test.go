//go:build linux

package guestagent

import (
	"net"
	"reflect"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/rfc1035label"
)

func TestPickInterface(t *testing.T) {
	tests := []struct {
		name  string
		links []linkInfo
		want  string
	}{
		{"eth0", []linkInfo{{1, "lo", "device", "loopback"}, {2, "eth0", "device", "ether"}}, "eth0"},
		{"renamed nic", []linkInfo{{3, "enp0s1", "device", "ether"}, {1, "lo", "device", "loopback"}, {2, "docker0", "bridge", "ether"}}, "enp0s1"},
		{"first by index", []linkInfo{{4, "ens5", "device", "ether"}, {3, "ens4", "device", "ether"}}, "ens4"},
		{"none", []linkInfo{{1, "lo", "device", "loopback"}, {2, "veth0", "veth", "ether"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := pickInterface(tt.links)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("got %q %v, want %q", got, ok, tt.want)
			}
		})
	}
}

func TestLeaseConfig(t *testing.T) {
	ack, err := dhcpv4.New(
		dhcpv4.WithYourIP(net.IPv4(192, 168, 127, 2)),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(net.CIDRMask(24, 32))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IPv4(192, 168, 127, 1))),
		dhcpv4.WithOption(dhcpv4.OptDNS(net.IPv4(192, 168, 127, 1), net.IPv4(1, 1, 1, 1))),
		dhcpv4.WithOption(dhcpv4.OptDomainSearch(&rfc1035label.Labels{Labels: []string{"berth.internal", "example.com"}})),
		dhcpv4.WithOption(dhcpv4.OptDomainName("example.com")),
		dhcpv4.WithOption(dhcpv4.Option{Code: dhcpv4.OptionInterfaceMTU, Value: dhcpv4.Uint16(4000)}),
	)
	if err != nil {
		t.Fatal(err)
	}
	c, err := leaseConfig(ack)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr.String() != "192.168.127.2/24" || !c.Gateway.Equal(net.IPv4(192, 168, 127, 1)) || c.MTU != 4000 {
		t.Fatalf("got %+v", c)
	}
	if !reflect.DeepEqual(c.Search, []string{"berth.internal", "example.com"}) {
		t.Fatalf("search %v", c.Search)
	}
	if b := broadcast(c.Addr); !b.Equal(net.IPv4(192, 168, 127, 255)) {
		t.Fatalf("broadcast %v", b)
	}
	want := "# written by berth-agent from the DHCP lease\nnameserver 192.168.127.1\nnameserver 1.1.1.1\nsearch berth.internal example.com\n"
	if got := string(renderResolvConf(c)); got != want {
		t.Fatalf("resolv.conf:\n%s\nwant:\n%s", got, want)
	}

	// A minimal lease (QEMU's slirp): no mask, no MTU, no search list.
	ack, _ = dhcpv4.New(dhcpv4.WithYourIP(net.IPv4(10, 0, 2, 15)))
	c, err = leaseConfig(ack)
	if err != nil || c.Addr.String() != "10.0.2.15/8" || c.MTU != 0 || c.Gateway != nil {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := leaseConfig(&dhcpv4.DHCPv4{}); err == nil {
		t.Fatal("lease without an address accepted")
	}
}

func TestRenderResolvConfLimits(t *testing.T) {
	c := netConfig{Search: []string{"a", "b", "c", "d", "e", "f", "g"}}
	for i := 1; i <= 5; i++ {
		c.DNS = append(c.DNS, net.IPv4(10, 0, 0, byte(i)))
	}
	want := "# written by berth-agent from the DHCP lease\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nsearch a b c d e f\n"
	if got := string(renderResolvConf(c)); got != want {
		t.Fatalf("got:\n%s", got)
	}
}
