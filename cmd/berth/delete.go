package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete [INSTANCE]",
		Aliases: []string{"rm"},
		Short:   "Delete an instance (its data disk is kept unless --data)",
		Long: `Delete an instance and its docker context (docker goes back to its default context
if it was the current one; other contexts are never touched). The data disk, with every
image, container and volume, is kept unless --data, which asks first (--force skips the
question; without a terminal --force is needed). Works on a Broken instance and on the
data a delete kept.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := instanceName(cmd, args)
			if err != nil {
				return err
			}
			// Existing, not Open: an instance without a valid config (Broken), or only the data
			// disk a delete kept, can be deleted too.
			inst, err := store.Existing(name)
			if err != nil {
				return err
			}
			data, _ := cmd.Flags().GetBool("data")
			force, _ := cmd.Flags().GetBool("force")
			out := cmd.OutOrStdout()
			if inst.DataOnly() && !data {
				fmt.Fprintf(out, "Instance %q was deleted already; only its data disk is kept in %s. `berth start %s` uses it again, `berth delete --data %s` removes it.\n", name, inst.Dir, name, name)
				return nil
			}
			if data && !force {
				if err := confirm(cmd, fmt.Sprintf("Delete instance %q and its data disk: every image, container and volume in it?", name), "--force (-f)"); err != nil {
					return err
				}
			}
			if err := instance.Delete(cmd.Context(), inst, data, force); err != nil {
				return err
			}
			if data {
				fmt.Fprintf(out, "Deleted %q and its data\n", inst.Name)
			} else if _, err := os.Stat(inst.Path(store.DataDisk)); errors.Is(err, os.ErrNotExist) {
				os.Remove(inst.Dir) // nothing was kept
				fmt.Fprintf(out, "Deleted %q\n", inst.Name)
			} else {
				fmt.Fprintf(out, "Deleted %q; its images, containers and volumes are kept in %s (remove them with --data)\n", inst.Name, inst.Dir)
			}
			return nil
		},
	}
	cmd.Flags().Bool("data", false, "also delete the data disk: every image, container and volume (asks first)")
	cmd.Flags().BoolP("force", "f", false, "do not ask; stop the instance first if it is running")
	return cmd
}
