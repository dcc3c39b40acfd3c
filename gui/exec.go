package gui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// FindBerth locates the berth CLI: the given path, else the berth next to this executable
// (how the packages install them, the macOS app bundle included), else berth on PATH.
func FindBerth(explicit string) string {
	if explicit != "" {
		return explicit
	}
	name := "berth"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return name
}

// BerthStarter starts an instance with `berth start NAME`. The CLI is what spawns the
// host daemon: instance.Start re-executes its own binary as `hostd`, and the tray binary
// does not (and should not) contain the daemon. The tray follows the start's progress
// through the control API's events, like any client.
func BerthStarter(berth string, env []string) Starter {
	return func(ctx context.Context, name string) error {
		cmd := exec.CommandContext(ctx, berth, "start", name)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		hideWindow(cmd)
		if err := cmd.Run(); err != nil {
			msg := strings.TrimSpace(out.String())
			if i := strings.LastIndex(msg, "Error: "); i >= 0 {
				msg = msg[i+len("Error: "):]
			} else if lines := strings.Split(msg, "\n"); len(lines) > 5 {
				msg = strings.Join(lines[len(lines)-5:], "\n")
			}
			if msg == "" {
				msg = err.Error()
			}
			return errors.New(msg)
		}
		return nil
	}
}

// ShellCommand returns the command line that opens the user's terminal running
// `berth shell NAME`, for goos. lookPath and getenv are exec.LookPath and os.Getenv
// outside tests.
func ShellCommand(goos, berth, name string, lookPath func(string) (string, error), getenv func(string) string) ([]string, error) {
	shell := []string{berth, "shell", name}
	switch goos {
	case "darwin":
		// Terminal.app runs a command through AppleScript; `open -a Terminal` cannot pass
		// arguments.
		script := fmt.Sprintf(`tell application "Terminal" to do script "%s"`, appleScriptEscape(posixQuote(shell)))
		return []string{"osascript", "-e", script, "-e", `tell application "Terminal" to activate`}, nil
	case "windows":
		if p, err := lookPath("wt.exe"); err == nil {
			return append([]string{p, "new-tab", "--title", "berth " + name}, shell...), nil
		}
		// start opens a new console window; its first quoted argument is the title.
		return append([]string{"cmd.exe", "/c", "start", "berth " + name}, shell...), nil
	}
	type term struct {
		bin  string
		flag string // what precedes the command
	}
	var terms []term
	if t := getenv("TERMINAL"); t != "" {
		terms = append(terms, term{t, "-e"})
	}
	terms = append(terms,
		term{"x-terminal-emulator", "-e"}, // Debian and Ubuntu's choice of the user's terminal
		term{"gnome-terminal", "--"},
		term{"konsole", "-e"},
		term{"xfce4-terminal", "-x"},
		term{"kitty", ""},
		term{"alacritty", "-e"},
		term{"xterm", "-e"},
	)
	for _, t := range terms {
		p, err := lookPath(t.bin)
		if err != nil {
			continue
		}
		args := []string{p}
		if t.flag != "" {
			args = append(args, t.flag)
		}
		return append(args, shell...), nil
	}
	return nil, fmt.Errorf("no terminal found (tried x-terminal-emulator, gnome-terminal, konsole, xfce4-terminal, kitty, alacritty, xterm; set $TERMINAL): run `%s` yourself", strings.Join(shell, " "))
}

// posixQuote joins args into one sh command line.
func posixQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func appleScriptEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// OpenShell opens the user's terminal with a shell in the VM.
func OpenShell(berth, name string) error {
	args, err := ShellCommand(runtime.GOOS, berth, name, exec.LookPath, os.Getenv)
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to open a terminal (%s): %w", args[0], err)
	}
	go cmd.Wait()
	return nil
}
