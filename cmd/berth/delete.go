package main

import (
	"fmt"

	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

func newDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete [INSTANCE]",
		Aliases: []string{"rm"},
		Short:   "Delete an instance (its data disk is kept unless --data)",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			data, _ := cmd.Flags().GetBool("data")
			force, _ := cmd.Flags().GetBool("force")
			if err := instance.Delete(cmd.Context(), inst, data, force); err != nil {
				return err
			}
			if data {
				fmt.Fprintf(cmd.OutOrStdout(), "Deleted %q and its data\n", inst.Name)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "Deleted %q; its images, containers and volumes are kept in %s (remove them with --data)\n", inst.Name, inst.Dir)
			}
			return nil
		},
	}
	cmd.Flags().Bool("data", false, "also delete the data disk: every image, container and volume")
	cmd.Flags().Bool("force", false, "stop the instance first if it is running")
	return cmd
}
