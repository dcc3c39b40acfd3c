package main

import (
	"cmp"
	"fmt"
	"net"
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
		Long: `Show an instance's state. Exit status: 0 when Running, 3 when not, 1 on an error
(with --json the error is printed as {"name": ..., "error": ...} on stdout).`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, _ := cmd.Flags().GetBool("json")
			name, _ := instanceName(cmd, args)
			inst, err := openInstance(cmd, args)
			var st api.Status
			if err == nil {
				st, err = instance.Status(cmd.Context(), inst)
			}
			if err != nil {
				if asJSON {
					printJSON(cmd.OutOrStdout(), map[string]string{"name": name, "error": err.Error()})
					return &exitError{code: 1}
				}
				return err
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), st); err != nil {
					return err
				}
				if code := statusExitCode(st.State); code != 0 {
					return &exitError{code: code}
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintf(w, "Name:\t%s\nState:\t%s\n", st.Name, st.State)
			if st.Error != "" {
				fmt.Fprintf(w, "Error:\t%s\n", st.Error)
			}
			fmt.Fprintf(w, "Resources:\t%d CPUs, %s GiB memory, %d GiB disk, %s\n", st.CPUs, fmtGiB(st.MemoryGiB), st.DiskGiB, st.Arch)
			if api.Up(st.State) {
				fmt.Fprintf(w, "Daemon:\tpid %d, accelerator %s, up %s\n", st.PID, st.Accel, time.Since(st.StartedAt).Round(time.Second))
				if g := st.Guest; g != nil {
					fmt.Fprintf(w, "Guest:\tkernel %s, engine %s %s, ip %s\n", g.Kernel, g.Engine, g.EngineVersion, g.IP)
					writeGuestVersions(w, "", g) // version.go
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
				printRegistry(w, inst.Name)
				printIdle(w, st) // pause.go
			}
			w.Flush()
			if code := statusExitCode(st.State); code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

// statusExitCode lets scripts test `berth status` like `systemctl is-active`.
func statusExitCode(state string) int {
	if state == api.StateRunning || state == api.StatePaused {
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
			if q, _ := cmd.Flags().GetBool("quiet"); q {
				for _, n := range names {
					fmt.Fprintln(cmd.OutOrStdout(), n)
				}
				return nil
			}
			var all []api.Status
			for _, n := range names {
				inst, err := store.Open(n)
				if err != nil {
					// Only the data disk a delete kept: say so. Anything else half-deleted
					// shows as Broken and never breaks the list; `berth delete` removes both.
					if ex, xerr := store.Existing(n); xerr == nil && ex.DataOnly() {
						all = append(all, api.Status{Name: n, State: StateDataOnly,
							Error: fmt.Sprintf("deleted; its data disk is kept: `berth start %s` uses it, `berth delete --data %s` removes it", n, n)})
						continue
					}
					all = append(all, api.Status{Name: n, State: api.StateBroken, Error: err.Error() + "; remove it with `berth delete " + n + "`"})
					continue
				}
				st, _ := instance.Status(cmd.Context(), inst)
				if c, err := inst.Config(); err == nil {
					st.Cluster = c.Cluster // the cluster column (cluster.go)
				}
				all = append(all, st)
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				if all == nil {
					all = []api.Status{}
				}
				return printJSON(cmd.OutOrStdout(), all)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSTATE\tARCH\tCPUS\tMEMORY\tDISK\tCONTEXT\tCLUSTER")
			for _, s := range all {
				if s.CPUs == 0 { // nothing known but the name
					fmt.Fprintf(w, "%s\t%s\t-\t-\t-\t-\t-\t-\n", s.Name, s.State)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%sGiB\t%dGiB\t%s\t%s\n", s.Name, s.State, s.Arch, s.CPUs, fmtGiB(s.MemoryGiB), s.DiskGiB, s.DockerContext, cmp.Or(s.Cluster, "-"))
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	cmd.Flags().BoolP("quiet", "q", false, "print only the names")
	return cmd
}

// StateDataOnly is list's state for an instance a delete left only the data disk of.
const StateDataOnly = "Deleted (data kept)"
