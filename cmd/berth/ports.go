package main

import (
	"fmt"
	"net"
	"strconv"
	"text/tabwriter"

	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

func newPortsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "ports [INSTANCE]",
		Short:             "List the ports forwarded from the VM to this machine",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := runningInstance(cmd, args)
			if err != nil {
				return err
			}
			ports, err := instance.Client(inst).Ports(cmd.Context())
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), ports)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "PROTO\tHOST\tGUEST\tCONTAINER\tSTATE")
			for _, p := range ports {
				state := p.State
				if p.Error != "" {
					state += ": " + p.Error
				}
				owner := p.Container
				if owner == "" {
					owner = "(" + p.Source + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.Proto, net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)),
					net.JoinHostPort(p.GuestIP, strconv.Itoa(p.GuestPort)), owner, state)
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}
