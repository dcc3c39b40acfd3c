package main

import (
	"errors"
	"os"

	"github.com/spf13/cobra"
)

// envAllowRoot lets berth run as root where root is the only user there is (a CI machine,
// a container); docs/security.md.
const envAllowRoot = "BERTH_ALLOW_ROOT"

// euid is the effective user id (-1 on Windows, where this check does not apply); a
// variable for tests.
var euid = os.Geteuid

// rootExempt are the commands that run as root anyway: they read nothing of an instance.
var rootExempt = map[string]bool{"version": true, "help": true, "completion": true, "doctor": true,
	cobra.ShellCompRequestCmd: true, cobra.ShellCompNoDescRequestCmd: true}

// errRoot is what berth says as root (RELIABILITY item 18, as Lima does).
var errRoot = errors.New("berth must not run as root: the VM, its state and the docker socket would belong to root, " +
	"and what containers write to your shared home would be written as root. Run it as your own user " +
	"(sudo is not needed for anything berth does). Where root is the only user, as on a CI machine or in a container, set " +
	envAllowRoot + "=1")

// refuseRoot is the root command's PersistentPreRunE.
func refuseRoot(cmd *cobra.Command, _ []string) error {
	if euid() != 0 || os.Getenv(envAllowRoot) == "1" || rootExempt[cmd.Name()] {
		return nil
	}
	return errRoot
}
