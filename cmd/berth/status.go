package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [INSTANCE]",
		Short: "Show an instance's state",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			st, err := instance.Status(cmd.Context(), inst)
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(st)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "Name:\t%s\nState:\t%s\n", st.Name, st.State)
			if st.Error != "" {
				fmt.Fprintf(w, "Error:\t%s\n", st.Error)
			}
			fmt.Fprintf(w, "Resources:\t%d CPUs, %d GiB memory, %d GiB disk, %s\n", st.CPUs, st.MemoryGiB, st.DiskGiB, st.Arch)
			if st.State == api.StateRunning || st.State == api.StateDegraded {
				fmt.Fprintf(w, "Daemon:\tpid %d, accelerator %s, up %s\n", st.PID, st.Accel, time.Since(st.StartedAt).Round(time.Second))
				if g := st.Guest; g != nil {
					fmt.Fprintf(w, "Guest:\tkernel %s, engine %s %s, ip %s\n", g.Kernel, g.Engine, g.EngineVersion, g.IP)
					fmt.Fprintf(w, "Data disk:\t%.1f of %.1f GiB used\n", float64(g.DataDisk.Used)/(1<<30), float64(g.DataDisk.Total)/(1<<30))
				}
				fmt.Fprintf(w, "Docker socket:\t%s\nDocker context:\t%s\n", st.DockerSocket, st.DockerContext)
				active := 0
				for _, p := range st.Ports {
					if p.State == "active" {
						active++
						continue
					}
					fmt.Fprintf(w, "Port failed:\t%s %s: %s\n", p.Proto, net.JoinHostPort(p.HostIP, strconv.Itoa(p.HostPort)), p.Error)
				}
				fmt.Fprintf(w, "Ports:\t%d forwarded (berth ports)\n", active)
			}
			w.Flush()
			if st.State != api.StateRunning {
				os.Exit(statusExitCode(st.State))
			}
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

// statusExitCode lets scripts test `berth status` like `systemctl is-active`.
func statusExitCode(state string) int {
	if state == api.StateRunning {
		return 0
	}
	return 3
}

func newListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List instances",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := store.List()
			if err != nil {
				return err
			}
			var all []api.Status
			for _, n := range names {
				inst, err := store.Open(n)
				if err != nil {
					// A half-deleted instance shows as Broken and never breaks the list.
					all = append(all, api.Status{Name: n, State: "Broken", Error: err.Error()})
					continue
				}
				st, _ := instance.Status(cmd.Context(), inst)
				all = append(all, st)
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				if all == nil {
					all = []api.Status{}
				}
				return printJSON(all)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTATE\tARCH\tCPUS\tMEMORY\tDISK\tCONTEXT")
			for _, s := range all {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%dGiB\t%dGiB\t%s\n", s.Name, s.State, s.Arch, s.CPUs, s.MemoryGiB, s.DiskGiB, s.DockerContext)
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}
