package main

import (
	"bytes"
	"fmt"

	"github.com/spf13/cobra"
)

func newCompletionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script (berth install installs bash, zsh and fish ones)",
		Long: `Print the completion script for a shell.

berth install puts the bash, zsh and fish scripts where those shells look for them
(see docs/install.md). To load one by hand:
  bash:        source <(berth completion bash)
  zsh:         berth completion zsh > "${fpath[1]}/_berth"
  fish:        berth completion fish | source
  powershell:  berth completion powershell | Out-String | Invoke-Expression`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := completionScript(cmd.Root(), args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

// completionScript generates a shell's completion script with cobra; the scripts call
// `berth __complete`, so they follow whatever berth is on the PATH.
func completionScript(root *cobra.Command, shell string) ([]byte, error) {
	var b bytes.Buffer
	var err error
	switch shell {
	case "bash":
		err = root.GenBashCompletionV2(&b, true)
	case "zsh":
		err = root.GenZshCompletion(&b)
	case "fish":
		err = root.GenFishCompletion(&b, true)
	case "powershell":
		err = root.GenPowerShellCompletionWithDesc(&b)
	default:
		return nil, fmt.Errorf("unknown shell %q: want bash, zsh, fish or powershell", shell)
	}
	return b.Bytes(), err
}
