package main

import (
	"log/slog"
	"os"

	"github.com/berth-dev/berth/host/daemon"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newHostdCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "hostd INSTANCE",
		Short:  "Run the host daemon of an instance (started by `berth start`)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := store.Open(args[0])
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("instance", inst.Name)
			err = daemon.Run(cmd.Context(), inst, log)
			if err != nil {
				log.Error("daemon exiting", "err", err)
			}
			return err
		},
	}
}
