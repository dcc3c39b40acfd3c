package main

import (
	"fmt"

	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/installer/install"
	"github.com/spf13/cobra"
)

func newUninstallCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what berth install added; --data also deletes every instance and its data",
		Long: `Stop every running instance and remove what berth install added, as recorded in
~/.berth/install.json: binaries, guest image, completions, the docker context "berth"
(if it was the current context, docker goes back to its default), start-at-login and the
docker.sock link. Your other docker contexts and settings are left alone. Instances and
their data disks are kept unless --data, which deletes every instance and the files berth
created in ~/.berth, and leaves anything else there in place.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data, _ := cmd.Flags().GetBool("data")
			out := cmd.OutOrStdout()
			res, err := install.Uninstall(cmd.Context(), install.UninstallOptions{
				Data:      data,
				Out:       out,
				Sudo:      sudoRunner(),
				Systemctl: helper("systemctl"),
				Launchctl: helper("launchctl"),
			})
			if err != nil {
				return err
			}
			root, _ := store.Root()
			left, _ := store.List()
			switch {
			case res.Changed == 0:
				fmt.Fprintln(out, "Nothing to remove: berth is not installed.")
			case len(left) > 0:
				fmt.Fprintf(out, "berth is uninstalled. %d instance(s) and their data are kept in %s (delete them with `berth uninstall --data`).\n", len(left), root)
			default:
				fmt.Fprintln(out, "berth is uninstalled.")
			}
			return nil
		},
	}
	cmd.Flags().Bool("data", false, "also delete ~/.berth entirely: every instance, its data disk (images, containers, volumes) and the guest images")
	return cmd
}
