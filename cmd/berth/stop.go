package main

import (
	"fmt"

	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

func newStopCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stop [INSTANCE]",
		Short: "Stop an instance: containers are stopped, the VM powers off",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			force, _ := cmd.Flags().GetBool("force")
			if err := instance.Stop(cmd.Context(), inst, force); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Stopped %q\n", inst.Name)
			return nil
		},
	}
	cmd.Flags().Bool("force", false, "power the VM off at once, without stopping containers")
	return cmd
}

func newRestartCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restart [INSTANCE]",
		Short: "Stop and start an instance",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			if inst.DaemonPID() != 0 {
				if err := instance.Stop(cmd.Context(), inst, false); err != nil {
					return err
				}
			}
			return startAction(cmd, args)
		},
	}
	addStartFlags(cmd)
	return cmd
}
