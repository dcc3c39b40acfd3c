package daemon

// Booting a launched VM: the agent, the engine, then the docker socket; every wait is
// bounded by bootTimeout and ends at once when the VM dies or a stop is requested.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// boot waits for the agent and the engine, then opens the docker socket.
func (d *Daemon) boot(ctx context.Context, drv vm.Driver, exit *vmExit) error {
	timeout := time.Duration(d.cfg.BootTimeout) * time.Second
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The VM dying, or a stop request, aborts every wait of the boot at once.
	vmErr := make(chan error, 1)
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		select {
		case <-exit.done:
			err := exit.err
			if err == nil {
				err = errors.New("the VM powered off during boot")
			}
			vmErr <- err
			cancel()
		case <-d.stopping:
			cancel()
		case <-bctx.Done():
		}
	}()
	defer watch.Wait()
	wrap := func(what string, err error) error {
		select {
		case verr := <-vmErr:
			return fmt.Errorf("VM exited while waiting for %s: %w", what, verr)
		default:
		}
		select {
		case <-d.stopping:
			return errStopRequested
		default:
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s waiting for %s (bootTimeout in %s)", timeout, what, d.inst.Path(store.ConfigFile))
		}
		return fmt.Errorf("failed waiting for %s: %w", what, err)
	}

	actx, acancel := context.WithTimeout(bctx, timeout)
	defer acancel()
	agent, err := dialAgent(actx, drv, d.log.With("component", "agent"))
	if err != nil {
		return wrap("the agent channel", err)
	}
	info, err := d.greet(actx, agent)
	if err != nil {
		agent.close()
		return wrap("the guest agent", err)
	}
	d.mu.Lock()
	d.status.Guest = apiGuest(info)
	// The kernel's share is what the guest measured before running /init.
	d.status.Phases = append(d.status.Phases, api.PhaseTiming{Phase: api.PhaseKernel, At: info.KernelBoot})
	d.mu.Unlock()
	d.setAgent(agent)
	d.publish(api.Event{State: api.StateStarting, Phase: api.PhaseKernel, Done: true,
		Message: fmt.Sprintf("Linux %s reached /init after %.1fs of guest uptime", info.Kernel, info.KernelBoot.Seconds())})
	d.phaseDone(api.PhaseAgent, "guest agent "+info.AgentVersion+" up, IP "+info.IP)
	d.mountShares(ctx, agent)

	d.phaseStart(api.PhaseEngine, "starting the Docker engine")
	// The agent starts the engine once its configuration is installed (engine_config.go).
	if err := d.configureEngine(actx, agent); err != nil {
		return wrap("the engine configuration", err)
	}
	d.ports = newPortManager(ctx, d.liveAgent, d.cfg.PortBindAddress == "0.0.0.0",
		d.log.With("component", "ports"), func(msg string, err error) {
			d.mu.Lock()
			state := d.status.State
			d.mu.Unlock()
			d.publish(api.Event{State: state, Message: msg, Error: errString(err)})
		})
	d.ports.hold = d.clientHold // forwarded connections wake a paused VM (idle.go)
	if r := d.registry; r != nil && r.Serve && r.HostPort != 0 {
		d.ports.fixed = []fixedForward{{
			Guest:    proto.Port{Proto: "tcp", GuestIP: "127.0.0.1", Port: proto.RegistryPort, Source: proto.PortSourceRegistry},
			HostPort: r.HostPort,
		}}
	}
	engineUp := make(chan error, 1)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.superviseAgent(ctx, drv, agent, engineUp)
	}()
	ectx, ecancel := context.WithTimeout(bctx, timeout)
	defer ecancel()
	select {
	case err := <-engineUp:
		if err != nil {
			return wrap("the Docker engine", err)
		}
	case <-ectx.Done():
		return wrap("the Docker engine", ectx.Err())
	}
	if info, err := agent.info(bctx); err == nil {
		d.mu.Lock()
		d.status.Guest = apiGuest(info)
		d.mu.Unlock()
	}
	d.phaseDone(api.PhaseEngine, "Docker engine ready")

	if err := d.openDockerSocket(ctx); err != nil {
		return err
	}
	d.phaseDone(api.PhaseSocket, "docker socket and context ready")
	d.setState(api.StateRunning, "", nil)
	d.inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid(), StartedAt: d.startedAt})
	// Disk events start after Running, so that a start's progress never shows one.
	close(d.running)
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.claimContext(ctx) }()
	return nil
}
