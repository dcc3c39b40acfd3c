package daemon

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/dockerproxy"
	"github.com/berth-dev/berth/host/engineconf"
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

// mountPolicy is the docker socket's bind mount check (docs/file-sharing.md); nil when
// berth.yaml turns it off. On Windows the shares are drvfs mounts under other paths than
// the host's, so the check is not made there.
func (d *Daemon) mountPolicy() *dockerproxy.Policy {
	if !d.cfg.MountCheck || runtime.GOOS == "windows" {
		return nil
	}
	paths := make([]string, 0, len(d.cfg.Shares))
	for _, s := range d.cfg.Shares {
		paths = append(paths, s.Path)
	}
	return dockerproxy.NewPolicy(d.inst.Name, paths)
}
