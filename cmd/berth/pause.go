package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

// pauseTimeout bounds `berth pause` and `berth resume`: the daemon bounds the VM's own
// answer at 10 s, and a resume also sets the guest clock.
const pauseTimeout = 30 * time.Second

func newPauseCommand() *cobra.Command {
	return pauseResumeCommand("pause", "Pause the VM's CPUs now; the next docker client, port connection or shell resumes it",
		"Paused", func(ctx context.Context, c *api.Client) (api.Status, error) { return c.Pause(ctx) })
}

func newResumeCommand() *cobra.Command {
	return pauseResumeCommand("resume", "Resume a paused VM",
		"Resumed", func(ctx context.Context, c *api.Client) (api.Status, error) { return c.Resume(ctx) })
}

func pauseResumeCommand(use, short, done string, do func(context.Context, *api.Client) (api.Status, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use + " [INSTANCE]",
		Short: short,
		Long: short + ".\n\nAn instance also pauses by itself after idle.pauseAfter (default 5m) with no running\n" +
			"container and no client; see docs/resources.md.",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := runningInstance(cmd, args)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), pauseTimeout)
			defer cancel()
			st, err := do(ctx, instance.Client(inst))
			if err != nil {
				return fmt.Errorf("%s %q: %w", use, inst.Name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %q (state %s)\n", done, inst.Name, st.State)
			return nil
		},
	}
}

// printIdle adds the idle pause and the guest clock to `berth status`.
func printIdle(w io.Writer, st api.Status) {
	if i := st.Idle; i != nil {
		switch {
		case !i.Supported:
			fmt.Fprintf(w, "Idle pause:\tnot available with this VM driver\n")
		case st.State == api.StatePaused:
			fmt.Fprintf(w, "Idle pause:\tpaused since %s; the next client resumes it\n", i.PausedAt.Local().Format(time.TimeOnly))
		case i.PauseAfter == 0:
			fmt.Fprintf(w, "Idle pause:\toff (idle.pauseAfter: 0)\n")
		default:
			fmt.Fprintf(w, "Idle pause:\tafter %s idle; %d containers running, %d clients\n", i.PauseAfter, i.Containers, i.Clients)
		}
	}
	if c := st.Clock; c != nil {
		if c.Error != "" {
			fmt.Fprintf(w, "Guest clock:\tcheck failed: %s\n", c.Error)
		} else {
			fmt.Fprintf(w, "Guest clock:\t%s off (±%s) at %s (%s; %s)\n", c.Offset.Round(time.Microsecond), c.Uncertainty.Round(time.Microsecond), c.CheckedAt.Local().Format(time.TimeOnly), c.Reason, c.Action)
		}
	}
}
