package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/cluster"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/netproxy"
	"github.com/berth-dev/berth/netproxy/clusternet"
	"github.com/berth-dev/berth/vm"
)

// clusterLink is a cluster member's second NIC (docs/cluster.md): the VM gets one end of
// a datagram socketpair, the cluster's netd the other. hostd keeps its own copy of netd's
// end, so when netd restarts the member re-attaches the same socket and the VM never
// notices more than lost frames.
type clusterLink struct {
	nic          vm.NIC
	flag         string // the kernel command line argument, with a leading space
	vmEnd, swEnd *os.File
}

// attachCluster attaches the instance to its cluster's network when its config names a
// cluster (nil otherwise). The link is kept (re-attached when netd goes away) by a
// goroutine of the run; close releases everything once the VM is gone.
func (d *Daemon) attachCluster(ctx context.Context, caps vm.Caps) (*clusterLink, error) {
	name := d.cfg.Cluster
	if name == "" {
		return nil, nil
	}
	if caps.Network != vm.NetworkDatagram {
		return nil, fmt.Errorf("cluster %q: this VM driver brings its own network and cannot join a cluster network (docs/cluster.md)", name)
	}
	rec, err := cluster.Load(name)
	if err != nil {
		return nil, err
	}
	m, err := rec.Member(d.inst.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: remove the cluster key (berth config set -p %s cluster=) or recreate the cluster", err, d.inst.Name)
	}
	prefix, err := netip.ParsePrefix(m.Prefix())
	if err != nil {
		return nil, fmt.Errorf("cluster %q: member %s has an invalid address %q", name, m.Instance, m.IP)
	}
	vmEnd, swEnd, err := netproxy.DatagramPair()
	if err != nil {
		return nil, err
	}
	cl := &clusterLink{
		nic:   vm.NIC{MAC: m.MAC, Conn: vmEnd},
		flag:  " " + proto.FlagCluster + "=" + proto.ClusterFlag{Node: m.Instance, MAC: m.MAC, Prefix: prefix}.String(),
		vmEnd: vmEnd, swEnd: swEnd,
	}
	link, err := d.clusterAttach(ctx, name, swEnd)
	if err != nil {
		cl.close()
		return nil, err
	}
	d.log.Info("attached to the cluster network", "cluster", name, "ip", m.IP, "mac", m.MAC)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.keepClusterLink(ctx, name, swEnd, link)
	}()
	return cl, nil
}

func (d *Daemon) clusterAttach(ctx context.Context, name string, swEnd *os.File) (*clusternet.Link, error) {
	sock, err := cluster.EnsureNetd(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("failed to start the network of cluster %q: %w", name, err)
	}
	return clusternet.Attach(ctx, sock, d.inst.Name, swEnd)
}

// keepClusterLink holds the attachment for the run; when netd goes away (it was killed
// or crashed: `cluster stop` stops the members first) it starts a new one and re-attaches.
func (d *Daemon) keepClusterLink(ctx context.Context, name string, swEnd *os.File, link *clusternet.Link) {
	backoff := 500 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			link.Close()
			return
		case <-link.Done():
		}
		link.Close()
		d.log.Warn("lost the cluster network; re-attaching", "cluster", name)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			var err error
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			link, err = d.clusterAttach(actx, name, swEnd)
			cancel()
			if err == nil {
				d.log.Info("re-attached to the cluster network", "cluster", name)
				backoff = 500 * time.Millisecond
				break
			}
			if errors.Is(err, cluster.ErrNotFound) {
				d.log.Error("cluster is gone; the cluster NIC stays down", "cluster", name)
				return
			}
			d.log.Warn("failed to re-attach to the cluster network", "cluster", name, "err", err)
			backoff = min(2*backoff, 10*time.Second)
		}
	}
}

// close releases the sockets; the VM must be gone (vz reads its end for the VM's life).
func (c *clusterLink) close() {
	if c == nil {
		return
	}
	c.vmEnd.Close()
	c.swEnd.Close()
}

// nics is the cluster NIC to add to the VM (none for a standalone instance).
func (c *clusterLink) nics() []vm.NIC {
	if c == nil {
		return nil
	}
	return []vm.NIC{c.nic}
}

// cmdline is the kernel command line argument that configures the cluster NIC.
func (c *clusterLink) cmdline() string {
	if c == nil {
		return ""
	}
	return c.flag
}

// handOverContext moves the cluster's docker context to another running manager when it
// points at this instance, which is stopping or whose VM died (docs/cluster.md): a script
// using `docker --context berth-NAME` keeps working while a manager is down.
func (d *Daemon) handOverContext() {
	if d.cfg.Cluster == "" {
		return
	}
	rec, err := cluster.Load(d.cfg.Cluster)
	if err != nil || cluster.ContextOn(rec) != d.inst.Name {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	to, err := cluster.PointContext(ctx, rec, d.inst.Name)
	if err != nil {
		d.log.Warn("the cluster's docker context stays on this node", "context", cluster.ContextName(rec.Name), "err", err)
		return
	}
	d.log.Info("moved the cluster's docker context", "context", cluster.ContextName(rec.Name), "to", to)
}

// claimContext points the cluster's docker context at a running manager when the member
// it points at is not running (this node came back while it was down), trying until a
// manager's swarm control plane is up or claimWait passed.
func (d *Daemon) claimContext(ctx context.Context) {
	if d.cfg.Cluster == "" {
		return
	}
	rec, err := cluster.Load(d.cfg.Cluster)
	if err != nil {
		return
	}
	if _, err := rec.Member(d.inst.Name); err != nil {
		return
	}
	deadline := time.Now().Add(claimWait)
	for {
		if on := cluster.ContextOn(rec); on != "" {
			if inst, err := store.Open(on); err == nil && inst.DaemonPID() != 0 {
				return
			}
		}
		to, err := cluster.PointContext(ctx, rec, "")
		if err == nil {
			d.log.Info("pointed the cluster's docker context at a running manager", "context", cluster.ContextName(rec.Name), "to", to)
			return
		}
		if time.Now().After(deadline) {
			d.log.Warn("the cluster's docker context points at a stopped node", "context", cluster.ContextName(rec.Name), "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// claimWait bounds claimContext: a manager's swarm control plane is up within it.
const claimWait = 3 * time.Minute
