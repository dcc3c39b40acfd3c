package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/host/store"
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

// configError adds to a config error how to fix berth.yaml; an instance directory that a
// newer berth wrote, or whose format.json is damaged, is not berth.yaml's fault and keeps
// its own advice.
func configError(err error, name string) error {
	if errors.Is(err, store.ErrIncompatible) || errors.Is(err, store.ErrFormatDamaged) {
		return err
	}
	return fmt.Errorf("%w; fix it with `berth config edit %s`", err, name)
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

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exitError ends berth with code, printing msg (if any) on stderr: for commands whose
// exit status means something (status: 3 when not running; shell: the command's status)
// or that printed their error already (status --json).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

// exitCode maps an error from the command tree to berth's exit status and the message to
// print ("" for none).
func exitCode(err error) (int, string) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, ee.msg
	}
	return 1, err.Error()
}

// isTerminal tells whether f is a terminal; tests replace it.
var isTerminal = func(f any) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(fd.Fd()))
}

// confirm asks a yes/no question on the terminal; without one (stdin or stdout not a
// terminal) it refuses with an error saying how to go ahead anyway.
func confirm(cmd *cobra.Command, question, withoutAsking string) error {
	if !isTerminal(cmd.InOrStdin()) || !isTerminal(cmd.OutOrStdout()) {
		return fmt.Errorf("%s needs confirmation, and there is no terminal to ask on: pass %s to go ahead", question, withoutAsking)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s [y/N] ", question)
	line, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("cancelled: nothing was deleted")
}

// completeInstances completes an instance name for the first argument.
func completeInstances(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return instanceNames(), cobra.ShellCompDirectiveNoFileComp
}

// completeProfile completes -p/--profile.
func completeProfile(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return instanceNames(), cobra.ShellCompDirectiveNoFileComp
}

func instanceNames() []string {
	names, _ := store.List()
	return names
}

// fixedValues completes a flag with a fixed list of values.
func fixedValues(vals ...string) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return vals, cobra.ShellCompDirectiveNoFileComp
	}
}
