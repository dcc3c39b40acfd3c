//go:build !windows

package gui

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// CopyText puts text on the clipboard without a GUI toolkit (the tray process runs
// none): pbcopy on macOS; on Linux and the BSDs the first of wl-copy (Wayland), xclip
// and xsel. X11 and Wayland clipboards belong to a running client, so a process must
// stay to hold the text: these tools fork one that lives until another copy replaces it.
func CopyText(text string) error {
	for _, argv := range clipboardCommands(runtime.GOOS, os.Getenv) {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			continue
		}
		cmd := exec.Command(path, argv[1:]...)
		cmd.Stdin = strings.NewReader(text)
		// No pipes on stdout or stderr: the forked holder keeps what it inherits open,
		// and waiting for those to close would wait until the text is replaced.
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", argv[0], err)
		}
		return nil
	}
	if runtime.GOOS == "darwin" {
		return errors.New("pbcopy not found")
	}
	return errors.New("no clipboard tool: install wl-clipboard (Wayland), xclip or xsel")
}

// clipboardCommands lists the commands CopyText tries, in order.
func clipboardCommands(goos string, getenv func(string) string) [][]string {
	if goos == "darwin" {
		return [][]string{{"pbcopy"}}
	}
	var cmds [][]string
	if getenv("WAYLAND_DISPLAY") != "" {
		cmds = append(cmds, []string{"wl-copy"})
	}
	if getenv("DISPLAY") != "" {
		cmds = append(cmds, []string{"xclip", "-selection", "clipboard"}, []string{"xsel", "--clipboard", "--input"})
	}
	return cmds
}
