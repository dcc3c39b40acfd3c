//go:build linux

package guestagent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

// configureCluster sets up the cluster NIC when the kernel command line carries
// proto.FlagCluster (docs/cluster.md): the NIC with the flag's MAC gets the flag's address
// and no other route than its subnet's (the cluster network routes nowhere; the guest's
// traffic to anywhere else keeps leaving through eth0), and the guest is named after its
// node so `docker node ls` tells the nodes apart. Failures are logged: the guest works on
// without the cluster network, and the host's cluster status shows the node unreachable.
func configureCluster(log *slog.Logger) {
	cl, err := ReadCmdline()
	if err != nil || cl[proto.FlagCluster] == "" {
		return
	}
	c, err := proto.ParseClusterFlag(cl[proto.FlagCluster])
	if err != nil {
		log.Error("cluster network not configured", "err", err)
		return
	}
	if err := setupClusterLink(c); err != nil {
		log.Error("cluster network not configured", "err", err)
		return
	}
	if err := unix.Sethostname([]byte(c.Node)); err != nil {
		log.Warn("failed to set the hostname", "hostname", c.Node, "err", err)
	}
	log.Info("cluster network configured", "node", c.Node, "mac", c.MAC, "address", c.Prefix.String())
}

func setupClusterLink(c proto.ClusterFlag) error {
	ctx, cancel := context.WithTimeout(context.Background(), linkTimeout)
	defer cancel()
	var link netlink.Link
	for link == nil {
		links, err := netlink.LinkList()
		if err != nil {
			return fmt.Errorf("failed to list network interfaces: %w", err)
		}
		for _, l := range links {
			if l.Attrs().HardwareAddr.String() == c.MAC {
				link = l
			}
		}
		if link != nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no network interface has the cluster MAC %s", c.MAC)
		case <-time.After(50 * time.Millisecond):
		}
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("failed to bring %s up: %w", name, err)
	}
	ipn := net.IPNet{IP: c.Prefix.Addr().AsSlice(), Mask: net.CIDRMask(c.Prefix.Bits(), 32)}
	// The kernel adds the subnet's route with the address; no gateway, no default route.
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: &ipn, Broadcast: broadcast(ipn)}); err != nil {
		return fmt.Errorf("failed to set address %s on %s: %w", c.Prefix, name, err)
	}
	return nil
}
