package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/berth-dev/berth/host/store"
	"github.com/spf13/cobra"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config show|get|set|edit",
		Short: "Show or change an instance's settings (berth.yaml; see docs/config.md)",
		Long: `Show or change an instance's settings, kept in ~/.berth/<instance>/berth.yaml. Every key
is described in docs/config.md and by berth config keys. Values are checked by the same
code as berth start; an invalid one is refused and the file is left as it was. Changes
to a running instance take effect with berth restart.`,
	}
	cmd.AddCommand(newConfigShowCommand(), newConfigGetCommand(), newConfigSetCommand(), newConfigEditCommand(), newConfigKeysCommand())
	return cmd
}

func newConfigShowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:               "show [INSTANCE]",
		Short:             "Print every setting, defaults included",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := configOf(cmd, args)
			if err != nil {
				return err
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), cfg.AsMap())
			}
			_, err = cmd.OutOrStdout().Write(cfg.Marshal())
			return err
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

func newConfigGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "get KEY",
		Short:             "Print one setting (env.NAME for one variable)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeKeys(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, _, err := configOf(cmd, nil)
			if err != nil {
				return err
			}
			v, err := store.Get(cfg, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
}

func newConfigSetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Change settings; a running instance applies them on berth restart",
		Long: `Change settings in berth.yaml. Lists are comma-separated (shares=/src,/data:ro; dns=1.1.1.1)
or written as YAML ([] for none); env.NAME=value sets one variable. An empty value
(key=) goes back to the default. Every value is checked first, and the file is only
written when all of them are valid; comments in it are kept.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completeKeys(true),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := instanceName(cmd, nil)
			if err != nil {
				return err
			}
			inst, err := store.Open(name)
			if errors.Is(err, store.ErrNotFound) {
				// Settings for an instance not created yet: check them, then create it.
				cfg, _, err := store.Set(store.DefaultConfig().Marshal(), args)
				if err != nil {
					return err
				}
				if _, err := store.Create(name, cfg); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Saved settings for the new instance %q; `berth start %s` creates it.\n", name, name)
				return nil
			}
			if err != nil {
				return err
			}
			before, after, err := inst.SetConfig(args)
			if err != nil {
				return err
			}
			reportChange(cmd, inst, before, after)
			return nil
		},
	}
}

// reportChange says what a change does: nothing, the next start, or a restart.
func reportChange(cmd *cobra.Command, inst *store.Instance, before, after store.Config) {
	out := cmd.OutOrStdout()
	changed := changedKeys(before, after)
	switch {
	case len(changed) == 0:
		fmt.Fprintln(out, "No change: the settings already have these values.")
	case inst.DaemonPID() != 0:
		fmt.Fprintf(out, "Saved %s. Instance %q is running: restart needed; `berth restart %s` applies the change.\n", strings.Join(changed, ", "), inst.Name, inst.Name)
	default:
		fmt.Fprintf(out, "Saved %s; it applies at the next `berth start %s`.\n", strings.Join(changed, ", "), inst.Name)
	}
}

// changedKeys names the keys whose values differ.
func changedKeys(a, b store.Config) []string {
	var keys []string
	for _, k := range store.Keys {
		va, _ := store.Get(a, k.Name)
		vb, _ := store.Get(b, k.Name)
		if va != vb {
			keys = append(keys, k.Name)
		}
	}
	return keys
}

func newConfigEditCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "edit [INSTANCE]",
		Short: "Edit berth.yaml in $VISUAL or $EDITOR; it is checked before it is saved",
		Long: `Open a copy of berth.yaml in $VISUAL, $EDITOR or vi (notepad on Windows). When the editor
exits the copy is checked like berth config set checks values: a valid one replaces
berth.yaml atomically, an invalid one is refused (you are asked to edit it again on a
terminal) and berth.yaml stays as it was.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			inst, err := openInstance(cmd, args)
			if err != nil {
				return err
			}
			if err := inst.CheckFormat(); err != nil {
				return err
			}
			path := inst.Path(store.ConfigFile)
			doc, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			before, _ := store.ParseConfig(doc)
			tmp, err := os.CreateTemp(inst.Dir, ".berth.edit-*.yaml")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			tmp.Write(doc)
			tmp.Close()
			for {
				if err := runEditor(cmd, tmp.Name()); err != nil {
					return err
				}
				edited, err := os.ReadFile(tmp.Name())
				if err != nil {
					return err
				}
				if bytes.Equal(edited, doc) {
					fmt.Fprintln(cmd.OutOrStdout(), "No change.")
					return nil
				}
				after, err := store.ParseConfig(edited)
				if err == nil {
					err = store.CheckChange(before, after)
				}
				if err == nil {
					if err := store.WriteFileAtomic(path, edited, 0o600); err != nil {
						return err
					}
					reportChange(cmd, inst, before, after)
					return nil
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "berth.yaml is not valid: %v\n", err)
				if cerr := confirm(cmd, "Edit it again?", "nothing"); cerr != nil {
					return fmt.Errorf("not saved: %s is unchanged", path)
				}
			}
		},
	}
}

// runEditor opens file in the user's editor, attached to this terminal.
func runEditor(cmd *cobra.Command, file string) error {
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
		if runtime.GOOS == "windows" {
			editor = "notepad"
		}
	}
	argv := strings.Fields(editor)
	c := exec.CommandContext(cmd.Context(), argv[0], append(argv[1:], file)...)
	c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	if err := c.Run(); err != nil {
		return fmt.Errorf("the editor (%s) failed: %w; berth.yaml is unchanged (set $EDITOR to choose another)", editor, err)
	}
	return nil
}

func newConfigKeysCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "keys",
		Short: "List every setting with what it allows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tALLOWED\tWHAT")
			for _, k := range store.Keys {
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.Name, k.Allowed, k.Doc)
			}
			return w.Flush()
		},
	}
}

// configOf returns the instance's settings: its berth.yaml, or the defaults for one not
// created yet (with ok false).
func configOf(cmd *cobra.Command, args []string) (store.Config, bool, error) {
	name, err := instanceName(cmd, args)
	if err != nil {
		return store.Config{}, false, err
	}
	inst, err := store.Open(name)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return store.DefaultConfig(), false, nil
	}
	if err != nil {
		return store.Config{}, false, err
	}
	cfg, err := inst.Config()
	if err != nil {
		return cfg, true, configError(err, name)
	}
	return cfg, true, nil
}

// completeKeys completes setting names (with "=" for set).
func completeKeys(assign bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if !assign && len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, k := range store.Keys {
			if assign {
				out = append(out, k.Name+"=\t"+k.Allowed)
			} else {
				out = append(out, k.Name+"\t"+k.Doc)
			}
		}
		if assign {
			return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
