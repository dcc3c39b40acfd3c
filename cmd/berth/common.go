package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

// instanceName resolves the instance from an argument or -p/--profile.
func instanceName(cmd *cobra.Command, args []string) (string, error) {
	p, _ := cmd.Flags().GetString("profile")
	switch {
	case len(args) > 0 && p != "" && args[0] != p:
		return "", fmt.Errorf("instance given twice: %q and --profile %q", args[0], p)
	case len(args) > 0:
		return args[0], nil
	case p != "":
		return p, nil
	}
	return store.DefaultName, nil
}

// openInstance resolves and opens an existing instance.
func openInstance(cmd *cobra.Command, args []string) (*store.Instance, error) {
	name, err := instanceName(cmd, args)
	if err != nil {
		return nil, err
	}
	return store.Open(name)
}

// runningInstance opens an instance that must be running: the commands that talk to the
// guest (ports, mounts, shell) share this check and its message.
func runningInstance(cmd *cobra.Command, args []string) (*store.Instance, error) {
	inst, err := openInstance(cmd, args)
	if err != nil {
		return nil, err
	}
	if inst.DaemonPID() == 0 {
		return nil, fmt.Errorf("instance %q is not running; start it with `berth start %s`", inst.Name, inst.Name)
	}
	return inst, nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
