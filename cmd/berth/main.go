// Command berth starts, stops and inspects berth instances: Linux VMs running the Docker
// engine, reached through a forwarded socket and a docker context.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/fileshare/guard"
	"github.com/berth-dev/berth/host/store"
)

// version is set at build time.
var version = "dev"

func main() {
	// Hidden: hostd runs QEMU and virtiofsd through this wrapper, which confines them with a
	// seccomp filter before executing them (fileshare/guard). Not a cobra command, so it
	// never shows in help or completion.
	if len(os.Args) > 1 && os.Args[1] == guard.Arg {
		guard.Main(os.Args[2:])
	}
	store.WrittenBy = "berth " + version
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand()
	if err := root.ExecuteContext(ctx); err != nil {
		code, msg := exitCode(err)
		if msg != "" {
			fmt.Fprintln(os.Stderr, "berth:", msg)
		}
		stop()
		os.Exit(code)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:               "berth",
		Short:             "Run the Docker engine in a lightweight Linux VM",
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           version,
		PersistentPreRunE: refuseRoot,
	}
	root.SetVersionTemplate(fmt.Sprintf("berth {{.Version}} %s/%s\n", runtime.GOOS, runtime.GOARCH))
	root.PersistentFlags().StringP("profile", "p", "", "instance name (default \"default\")")
	root.RegisterFlagCompletionFunc("profile", completeProfile)
	root.AddCommand(
		newStartCommand(),
		newStopCommand(),
		newRestartCommand(),
		newStatusCommand(),
		newListCommand(),
		newDeleteCommand(),
		newLogsCommand(),
		newPortsCommand(),
		newMountsCommand(),
		newConfigCommand(),
		newShellCommand(),
		newDoctorCommand(),
		newPauseCommand(), newResumeCommand(),
		newVersionCommand(),
		newHostdCommand(),
		newInstallCommand(),
		newUninstallCommand(),
		newCompletionCommand(),
		newClusterCommand(), newNetdCommand(),
	)
	return root
}
