package proto

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// ClusterFlag is the value of FlagCluster.
type ClusterFlag struct {
	Node   string       // the instance name, which becomes the guest's hostname
	MAC    string       // the cluster NIC's MAC
	Prefix netip.Prefix // the guest's address on the cluster network, with its subnet length
}

// String formats the flag's value.
func (c ClusterFlag) String() string {
	return c.Node + "," + c.MAC + "," + c.Prefix.String()
}

// ParseClusterFlag parses FlagCluster's value.
func ParseClusterFlag(v string) (ClusterFlag, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 3 {
		return ClusterFlag{}, fmt.Errorf("invalid %s=%q: want NODE,MAC,IP/PREFIX", FlagCluster, v)
	}
	c := ClusterFlag{Node: parts[0], MAC: parts[1]}
	if c.Node == "" || strings.ContainsAny(c.Node, " /") {
		return ClusterFlag{}, fmt.Errorf("invalid %s=%q: bad node name", FlagCluster, v)
	}
	mac, err := net.ParseMAC(parts[1])
	if err != nil || len(mac) != 6 {
		return ClusterFlag{}, fmt.Errorf("invalid %s=%q: bad MAC", FlagCluster, v)
	}
	c.MAC = mac.String()
	if c.Prefix, err = netip.ParsePrefix(parts[2]); err != nil || !c.Prefix.Addr().Is4() {
		return ClusterFlag{}, fmt.Errorf("invalid %s=%q: bad IPv4 address/prefix", FlagCluster, v)
	}
	return c, nil
}
