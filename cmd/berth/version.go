package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print berth's version, and the guest's engine versions when the instance runs",
		Long: `Print berth's version. When the instance (-p/--profile, default "default") runs, also
print what its guest runs: the distribution and kernel, the Docker engine and its API
version, containerd, runc and docker-init, as the engine itself reports them.`,
		Args: cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "berth %s %s/%s\n", version, runtime.GOOS, runtime.GOARCH)
			// Only a running instance has a guest to report on; anything else (none
			// created, stopped, a daemon that does not answer) prints berth's line alone.
			inst, err := openInstance(cmd, nil)
			if err != nil || inst.DaemonPID() == 0 {
				return
			}
			st, err := instance.Status(cmd.Context(), inst)
			if err != nil || st.Guest == nil || (st.State != api.StateRunning && st.State != api.StateDegraded) {
				return
			}
			fmt.Fprintf(w, "\nInstance %s (%s):\n", inst.Name, strings.ToLower(st.State))
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			writeGuestVersions(tw, "  ", st.Guest)
			tw.Flush()
		},
	}
}

// writeGuestVersions writes the guest's version lines (tab-separated, for a tabwriter):
// the OS and kernel, then the engine stack. A version the agent did not report (an older
// agent, an engine that has not answered yet) is left out.
func writeGuestVersions(w io.Writer, indent string, g *api.Guest) {
	guest := g.Kernel
	if g.OS != "" {
		guest = g.OS + ", kernel " + g.Kernel
	}
	fmt.Fprintf(w, "%sGuest OS:\t%s (%s)\n", indent, guest, g.Arch)
	if g.EngineVersion != "" {
		engine := "Docker Engine " + g.EngineVersion
		if g.EngineAPIVersion != "" {
			engine += " (API " + g.EngineAPIVersion + ")"
		}
		fmt.Fprintf(w, "%sEngine:\t%s\n", indent, engine)
	}
	for _, c := range []struct{ name, v string }{
		{"containerd", g.ContainerdVersion}, {"runc", g.RuncVersion}, {"docker-init", g.InitVersion},
	} {
		if c.v != "" {
			fmt.Fprintf(w, "%s%s:\t%s\n", indent, c.name, c.v)
		}
	}
}
