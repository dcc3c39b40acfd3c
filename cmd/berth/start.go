package main

import (
	"bytes"
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
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist):
		// Check the flags before anything is created, then create the instance with them
		// (store.Create keeps a config that a concurrent start wrote first).
		cfg := store.DefaultConfig()
		if _, err := applyFlags(cmd, &cfg); err != nil {
			return err
		}
		if inst, err = store.Create(name, cfg); err != nil {
			return err
		}
	case err != nil:
		return err
	}

	// From here on this start holds the instance's start lock: a second start (another
	// CLI, the tray) or a delete fails at once with a clear message instead of rewriting
	// the config, truncating the daemon's log or spawning a second daemon.
	starter, err := instance.LockStart(inst)
	if err != nil {
		return err
	}
	defer starter.Release()

	cur, err := inst.Config()
	if err != nil {
		return err
	}
	cfg := cur
	if _, err := applyFlags(cmd, &cfg); err != nil {
		return err
	}
	if cfg.Disk < cur.Disk {
		return fmt.Errorf("--disk %d is smaller than the current %d GiB: the data disk can only grow", cfg.Disk, cur.Disk)
	}
	changed := !bytes.Equal(cfg.Marshal(), cur.Marshal())
	if err := starter.Busy(cmd.Context()); err != nil {
		if changed && errors.Is(err, instance.ErrRunning) {
			return fmt.Errorf("instance %q is running; stop it before changing its settings", name)
		}
		return err
	}
	if changed {
		if err := inst.SaveConfig(cfg); err != nil {
			return err
		}
	}

	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "Starting %q: %d CPUs, %d GiB memory, %d GiB disk, %s\n", name, cfg.CPUs, cfg.Memory, cfg.Disk, cfg.Arch)
	t0 := time.Now()
	err = starter.Start(cmd.Context(), func(ev api.Event) {
		if ev.Phase != "" && ev.State == api.StateStarting && ev.Done {
			fmt.Fprintf(out, "  [%5.1fs] %-8s %s\n", time.Since(t0).Seconds(), ev.Phase, ev.Message)
		}
	})
	starter.Release()
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
