package main

import (
	"fmt"
	"strings"

	"github.com/berth-dev/berth/host/doctor"
	"github.com/spf13/cobra"
)

func newDoctorCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor [INSTANCE]",
		Short: "Check the hypervisor, image, disk space, daemon, docker CLI, ports, guest DNS and shares",
		Long: "Check what an instance needs and print a pass/warn/fail line per check, with the fix.\n" +
			"The guest checks resolve names only; nothing connects out of the host.\n" +
			"Exits 1 when a check fails.",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			probe, _ := cmd.Flags().GetString("probe-host")
			rep := doctor.Run(cmd.Context(), inst, doctor.Options{ProbeHost: probe})
			if j, _ := cmd.Flags().GetBool("json"); j {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printDoctor(cmd, rep)
			}
			if !rep.OK {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().Bool("json", false, "print the report as JSON")
	cmd.Flags().String("probe-host", doctor.DefaultProbeHost, "name the guest resolves to judge outbound access (resolved only, never connected to; empty skips)")
	return cmd
}

func printDoctor(cmd *cobra.Command, rep doctor.Report) {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "berth doctor: instance %s\n", rep.Instance)
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "%-5s %-16s %s\n", strings.ToUpper(c.Status), c.Name, c.Message)
		if c.Fix != "" && c.Status != doctor.Pass {
			fmt.Fprintf(w, "      %-16s fix: %s\n", "", c.Fix)
		}
	}
	if rep.OK {
		fmt.Fprintln(w, "no problems found")
	} else {
		fmt.Fprintln(w, "some checks failed: see the fixes above")
	}
}
