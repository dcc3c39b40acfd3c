package main

import (
	"log/slog"
	"os"

	"github.com/berth-dev/berth/host/cluster"
	"github.com/spf13/cobra"
)

func newNetdCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "netd CLUSTER",
		Short:  "Run a cluster's network (started by the first member that needs it)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cluster", args[0])
			err := cluster.RunNetd(cmd.Context(), args[0], log)
			if err != nil {
				log.Error("netd exiting", "err", err)
			}
			return err
		},
	}
}
