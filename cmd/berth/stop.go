package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newStopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop [INSTANCE]",
		Short: "Stop an instance: containers are stopped, the VM powers off",
		Long: `Stop an instance: the engine stops the containers, the guest syncs and powers off.
Stopping an instance that is not running does nothing. The docker context stays in place.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			force, _ := cmd.Flags().GetBool("force")
			timeout, _ := cmd.Flags().GetDuration("timeout")
			if force && !cmd.Flags().Changed("timeout") {
				timeout = api.DefaultForceStopTimeout
			}
			if timeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", timeout)
			}
			if stopped(inst) {
				fmt.Fprintf(cmd.OutOrStdout(), "Instance %q is not running: nothing to stop\n", inst.Name)
				return nil
			}
			if err := stopWithin(cmd.Context(), inst, force, timeout); err != nil {
				if errors.Is(err, instance.ErrNotRunning) && stopped(inst) {
					fmt.Fprintf(cmd.OutOrStdout(), "Instance %q is not running: nothing to stop\n", inst.Name)
					return nil
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Stopped %q\n", inst.Name)
			return nil
		},
	}
	cmd.Flags().BoolP("force", "f", false, "power the VM off at once, without stopping containers")
	cmd.Flags().Duration("timeout", api.DefaultStopTimeout, fmt.Sprintf("how long to wait for the instance to stop (default %s with --force)", api.DefaultForceStopTimeout))
	return cmd
}

// stopped reports whether inst has no daemon and no start in progress.
func stopped(inst *store.Instance) bool {
	if inst.DaemonPID() != 0 {
		return false
	}
	pid, op := inst.OpHolder()
	return !(pid > 0 && op == "start")
}

// stopWithin stops inst and waits at most timeout. When the instance is still up after it,
// the error says what state it is in and what to do next.
func stopWithin(ctx context.Context, inst *store.Instance, force bool, timeout time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := instance.Stop(sctx, inst, force)
	if err == nil {
		return nil
	}
	pid := inst.DaemonPID()
	if errors.Is(err, instance.ErrNotRunning) || pid == 0 {
		if errors.Is(err, instance.ErrNotRunning) {
			return err
		}
		return nil // it went down as the wait ended
	}
	if sctx.Err() == nil && !errors.Is(err, api.ErrStopTimeout) {
		return err
	}
	// Still running: ask the daemon what it is doing, briefly; else take the record.
	state := ""
	qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
	if st, serr := instance.Client(inst).Status(qctx); serr == nil {
		state = st.State
	}
	qcancel()
	if state == "" {
		state = inst.ReadState().State + " (recorded; the daemon does not answer)"
	}
	log := inst.Path(store.HostdLog)
	if !force {
		return fmt.Errorf("instance %q did not stop within %s: it is %s, daemon pid %d.\n"+
			"The guest may still be stopping containers. To power the VM off at once (containers are killed): berth stop --force %s\n"+
			"To wait longer: berth stop --timeout 10m %s. The daemon's log: %s",
			inst.Name, timeout, state, pid, inst.Name, inst.Name, log)
	}
	kill := fmt.Sprintf("kill -9 %d", pid)
	if runtime.GOOS == "windows" {
		kill = fmt.Sprintf("taskkill /F /PID %d", pid)
	}
	return fmt.Errorf("instance %q did not stop within %s even with --force: it is %s, daemon pid %d.\n"+
		"End the daemon and its VM with: %s. The daemon's log: %s",
		inst.Name, timeout, state, pid, kill, log)
}

func newRestartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restart [INSTANCE]",
		Short: "Stop and start an instance, applying changed settings",
		Long: `Stop the instance (if it runs) and start it again. Settings changed with berth config set
or berth config edit take effect now; flags change them as berth start's do, and are
checked before anything is stopped.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			// Check the flags against the config first: a bad flag must not leave the
			// instance stopped.
			assign, err := flagAssignments(cmd)
			if err != nil {
				return err
			}
			doc, err := os.ReadFile(inst.Path(store.ConfigFile))
			if err != nil {
				return err
			}
			if _, err := store.ParseConfig(doc); err != nil {
				return fmt.Errorf("invalid config %s: %w; fix it with `berth config edit %s`", inst.Path(store.ConfigFile), err, inst.Name)
			}
			if _, _, err := store.Set(doc, assign); err != nil {
				return fmt.Errorf("invalid settings: %w", err)
			}
			if inst.DaemonPID() != 0 {
				if err := stopWithin(cmd.Context(), inst, false, api.DefaultStopTimeout); err != nil {
					return err
				}
			}
			return startAction(cmd, args)
		},
	}
	addStartFlags(cmd)
	return cmd
}
