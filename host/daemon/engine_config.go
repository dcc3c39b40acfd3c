package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/berth-dev/berth/guestagent/dockerapi"
	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/dockerproxy"
	"github.com/berth-dev/berth/host/engineconf"
	"github.com/berth-dev/berth/host/store"
)

// engineConfig builds the guest engine's configuration (proxy, CAs, daemon.json, DNS, the
// local registry) from berth.yaml and hostd's environment. It runs before the VM boots, so that a CA file that
// is missing or holds no certificate fails the start at once, and again to send it.
func (d *Daemon) engineConfig() (*proto.EngineConfig, error) {
	ec, err := engineconf.Build(d.cfg, os.Getenv, d.log.With("component", "engine-config"))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, d.inst.Path("berth.yaml"))
	}
	ec.Registry = d.registryGuest
	return ec, nil
}

// configureEngine sends the engine configuration; the agent installs it and then starts
// the engine.
func (d *Daemon) configureEngine(ctx context.Context, agent *agentClient) error {
	ec, err := d.engineConfig()
	if err != nil {
		return err
	}
	_, err = agent.call(ctx, proto.Request{Type: proto.TypeEngineConfig, Engine: ec})
	return err
}

// dockerPolicy is the docker socket's check of requests (host/dockerproxy): bind mounts of
// host paths no share carries (docs/file-sharing.md; not when berth.yaml turns it off, nor
// on Windows, where the shares are drvfs mounts under other paths than the host's), and
// swarm init/join on an engine whose firewall backend cannot take part in a swarm.
func (d *Daemon) dockerPolicy() *dockerproxy.Policy {
	paths := make([]string, 0, len(d.cfg.Shares))
	for _, s := range d.cfg.Shares {
		paths = append(paths, s.Path)
	}
	p := dockerproxy.NewPolicy(d.inst.Name, paths)
	p.NoMountCheck = !d.cfg.MountCheck || runtime.GOOS == "windows"
	p.Swarm = d.swarmCheck
	return p
}

// swarmCheckWait bounds swarmCheck's question to the engine.
const swarmCheckWait = 10 * time.Second

// swarmCheck refuses a swarm init or join when the engine programs its firewall with
// nftables, which dockerd's swarm mode cannot use (the agent's choice for a standalone
// instance: guestagent/firewall.go). dockerd would refuse it too, with a message about a
// flag the user never set; this one says what to do. When the engine cannot be asked,
// the request goes on and the engine answers it.
func (d *Daemon) swarmCheck() error {
	ctx, cancel := context.WithTimeout(context.Background(), swarmCheckWait)
	defer cancel()
	c := dockerapi.New(d.inst.Path(store.DockerSock))
	defer c.Close()
	fw, err := c.FirewallBackend(ctx)
	if err != nil || fw != "nftables" {
		return nil
	}
	profile := ""
	if d.inst.Name != store.DefaultName {
		profile = " --profile " + d.inst.Name
	}
	return fmt.Errorf("berth: Docker's swarm mode needs the engine's iptables firewall backend, and this instance's engine uses nftables "+
		"(it starts much faster). Run `berth config set%s docker.firewall-backend=iptables` and `berth restart%s`, then try again; "+
		"or make a swarm of berth instances with `berth cluster create` (docs/cluster.md)", profile, profile)
}
