package main

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newStartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "start [INSTANCE]",
		Short: "Start an instance, creating it on first use",
		Args:  cobra.MaximumNArgs(1),
		RunE:  startAction,
	}
	addStartFlags(cmd)
	return cmd
}

// addStartFlags adds the settings a start may change (start and restart share them).
func addStartFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Int("cpus", 0, "number of CPUs")
	f.Int("memory", 0, "memory in GiB")
	f.Int("disk", 0, "data disk size in GiB (it can only grow)")
	f.String("arch", "", "guest architecture: amd64 or arm64")
	f.String("accel", "", "accelerator: auto, kvm, hvf, whpx or tcg")
}

func startAction(cmd *cobra.Command, args []string) error {
	name, err := instanceName(cmd, args)
	if err != nil {
		return err
	}
	inst, err := store.Open(name)
	var cfg store.Config
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		cfg = store.DefaultConfig()
	case err != nil:
		return err
	default:
		if cfg, err = inst.Config(); err != nil {
			return err
		}
	}
	oldDisk := cfg.Disk
	changed, err := applyFlags(cmd, &cfg)
	if err != nil {
		return err
	}
	if inst != nil && cfg.Disk < oldDisk {
		return fmt.Errorf("--disk %d is smaller than the current %d GiB: the data disk can only grow", cfg.Disk, oldDisk)
	}
	if inst == nil {
		if inst, err = store.Create(name, cfg); err != nil {
			return err
		}
	} else if changed {
		if pid := inst.DaemonPID(); pid != 0 {
			return fmt.Errorf("instance %q is running; stop it before changing its settings", name)
		}
		if err := inst.SaveConfig(cfg); err != nil {
			return err
		}
	}

	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Starting %q: %d CPUs, %d GiB memory, %d GiB disk, %s\n", name, cfg.CPUs, cfg.Memory, cfg.Disk, cfg.Arch)
	t0 := time.Now()
	err = instance.Start(cmd.Context(), inst, func(ev api.Event) {
		if ev.Phase != "" && ev.State == api.StateStarting && ev.Done {
			fmt.Fprintf(out, "  [%5.1fs] %-8s %s\n", time.Since(t0).Seconds(), ev.Phase, ev.Message)
		}
	})
	if err != nil {
		return err
	}
	st, _ := instance.Status(cmd.Context(), inst)
	fmt.Fprintf(out, "  [%5.1fs] %s", time.Since(t0).Seconds(), st.State)
	if st.Guest != nil && st.Guest.EngineVersion != "" {
		fmt.Fprintf(out, " (Docker Engine %s, accelerator %s)", st.Guest.EngineVersion, st.Accel)
	}
	fmt.Fprintf(out, "\n\nUse it with:\n  docker --context %s ps\n  docker context use %s     # make it the default\n  export DOCKER_HOST=unix://%s\n",
		st.DockerContext, st.DockerContext, st.DockerSocket)
	return nil
}

// applyFlags copies the flags the user set into cfg and validates the result.
func applyFlags(cmd *cobra.Command, cfg *store.Config) (bool, error) {
	f := cmd.Flags()
	changed := false
	for _, p := range []struct {
		name string
		dst  *int
	}{{"cpus", &cfg.CPUs}, {"memory", &cfg.Memory}, {"disk", &cfg.Disk}} {
		if f.Changed(p.name) {
			*p.dst, _ = f.GetInt(p.name)
			changed = true
		}
	}
	for _, p := range []struct {
		name string
		dst  *string
	}{{"arch", &cfg.Arch}, {"accel", &cfg.Accel}} {
		if f.Changed(p.name) {
			*p.dst, _ = f.GetString(p.name)
			changed = true
		}
	}
	if err := cfg.Validate(); err != nil {
		return false, fmt.Errorf("invalid settings: %w", err)
	}
	return changed, nil
}
