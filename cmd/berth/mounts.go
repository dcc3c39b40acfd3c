package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

func newMountsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "mounts [INSTANCE]",
		Short:             "List the host directories shared with the VM",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := runningInstance(cmd, args)
			if err != nil {
				return err
			}
			mounts, err := instance.Client(inst).Mounts(cmd.Context())
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), mounts)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "PATH\tTYPE\tMODE\tNOTIFY\tSTATE")
			for _, m := range mounts {
				mode := "rw"
				if m.ReadOnly {
					mode = "ro"
				}
				notify := "off"
				if m.Notify {
					notify = fmt.Sprintf("on (%d dirs)", m.Watched)
				}
				state := m.State
				if m.Error != "" {
					state += ": " + m.Error
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Path, m.Type, mode, notify, state)
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}
