package netproxy

import (
	"testing"

	"github.com/berth-dev/berth/guestagent/proto"
)

func TestDefaultConfig(t *testing.T) {
	want := Config{
		Subnet:    "192.168.127.0/24",
		GatewayIP: "192.168.127.1",
		GuestIP:   "192.168.127.2",
		GuestMAC:  "5a:94:ef:e4:0c:ee",
		HostIP:    "192.168.127.254",
		MTU:       1500,
	}
	if got := DefaultConfig(); got != want {
		t.Fatalf("DefaultConfig() = %+v, want %+v", got, want)
	}
	got := Config{Subnet: "10.5.0.0/16"}.withDefaults()
	if got.GatewayIP != "10.5.0.1" || got.GuestIP != "10.5.0.2" || got.HostIP != "10.5.255.254" {
		t.Fatalf("defaults derived from 10.5.0.0/16 = %+v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	with := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"defaults", DefaultConfig(), false},
		{"zero config takes defaults", Config{}, false},
		{"only subnet changed", Config{Subnet: "10.0.2.0/24"}, false},
		{"smallest subnet", Config{Subnet: "10.0.2.0/29"}, false},
		{"upper-case MAC", with(func(c *Config) { c.GuestMAC = "5A:94:EF:E4:0C:EF" }), false},
		{"unmasked subnet", with(func(c *Config) { c.Subnet = "192.168.127.7/24" }), false},
		{"subnet does not parse", with(func(c *Config) { c.Subnet = "192.168.127.0" }), true},
		{"IPv6 subnet", Config{Subnet: "fd00::/64"}, true},
		{"subnet too small", Config{Subnet: "10.0.2.0/30"}, true},
		{"gateway does not parse", with(func(c *Config) { c.GatewayIP = "gw" }), true},
		{"guest outside subnet", with(func(c *Config) { c.GuestIP = "192.168.128.2" }), true},
		{"host outside changed subnet", with(func(c *Config) { c.Subnet = "10.0.2.0/24" }), true},
		{"host is broadcast", with(func(c *Config) { c.HostIP = "192.168.127.255" }), true},
		{"gateway is network address", with(func(c *Config) { c.GatewayIP = "192.168.127.0" }), true},
		{"guest equals gateway", with(func(c *Config) { c.GuestIP = "192.168.127.1" }), true},
		{"host equals guest", with(func(c *Config) { c.HostIP = "192.168.127.2" }), true},
		{"IPv6 guest", with(func(c *Config) { c.GuestIP = "fd00::2" }), true},
		{"MAC does not parse", with(func(c *Config) { c.GuestMAC = "5a:94:ef" }), true},
		{"multicast MAC", with(func(c *Config) { c.GuestMAC = "01:00:5e:00:00:01" }), true},
		{"EUI-64 MAC", with(func(c *Config) { c.GuestMAC = "02:00:00:00:00:00:00:01" }), true},
		{"gateway MAC", with(func(c *Config) { c.GuestMAC = gatewayMAC }), true},
		{"MTU too small", with(func(c *Config) { c.MTU = 100 }), true},
		{"MTU too large", with(func(c *Config) { c.MTU = 70000 }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != tt.wantErr {
				t.Fatalf("Validate(%+v) = %v, wantErr %v", tt.cfg, err, tt.wantErr)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(Config{GuestMAC: "nope"}, nil); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

// TestDefaultsMatchContract: the defaults are the addresses the guest side assumes.
func TestDefaultsMatchContract(t *testing.T) {
	c := DefaultConfig()
	if c.GuestIP != proto.GuestIP || c.HostIP != proto.HostNATIP || c.Subnet != proto.Subnet {
		t.Errorf("defaults %+v do not match the guest contract (proto)", c)
	}
}
