package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newLogsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:       "logs [hostd|console|agent|engine]",
		Short:     "Show a log of the instance (-p for another instance)",
		Long:      "hostd: the host daemon; console: the guest's serial console; agent: berth-agent in the guest; engine: containerd and dockerd.",
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"hostd", "console", "agent", "engine"},
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, nil)
			if err != nil {
				return err
			}
			name := "hostd"
			if len(args) == 1 {
				name = args[0]
			}
			follow, _ := cmd.Flags().GetBool("follow")
			out := cmd.OutOrStdout()
			switch name {
			case "hostd":
				return tailFile(cmd.Context(), out, inst.Path(store.HostdLog), follow)
			case "console":
				return tailFile(cmd.Context(), out, inst.Path(store.ConsoleLog), follow)
			case "agent", "engine":
				if inst.DaemonPID() == 0 {
					return fmt.Errorf("instance %q is not running: the %s log lives in the VM (the console log has the agent's boot messages: berth logs console)", inst.Name, name)
				}
				rc, err := instance.Client(inst).Logs(cmd.Context(), name, follow)
				if err != nil {
					return err
				}
				defer rc.Close()
				_, err = io.Copy(out, rc)
				if cmd.Context().Err() != nil {
					return nil
				}
				return err
			}
			return fmt.Errorf("unknown log %q: choose hostd, console, agent or engine", name)
		},
	}
	cmd.Flags().BoolP("follow", "f", false, "keep printing what is appended")
	return cmd
}

// tailFile prints a file and, when following, what is appended until interrupted.
func tailFile(ctx context.Context, w io.Writer, path string, follow bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("no log yet: %w", err)
	}
	defer f.Close()
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
