package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/instance"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newShellCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shell [INSTANCE] [-- COMMAND [ARG...]]",
		Short: "Open a shell in the VM, or run a command there",
		Long: `Open a login shell in the VM, or run COMMAND there, with a real pty when stdin is a
terminal; berth exits with the command's status. It starts in the current directory when
that is inside a shared directory (which sits at the same path in the VM), else in /root;
--workdir chooses.`,
		ValidArgsFunction: completeInstances,
		RunE: func(cmd *cobra.Command, args []string) error {
			var instArgs, command []string
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				instArgs, command = args[:dash], args[dash:]
			} else {
				instArgs = args
			}
			if len(instArgs) > 1 {
				return errors.New("too many arguments: put the command after --")
			}
			inst, err := runningInstance(cmd, instArgs)
			if err != nil {
				return err
			}
			client := instance.Client(inst)
			dir, _ := cmd.Flags().GetString("workdir")
			if dir != "" && !path.IsAbs(filepath.ToSlash(dir)) {
				if runtime.GOOS == "windows" {
					return fmt.Errorf("--workdir %s: want an absolute path in the VM", dir)
				}
				abs, err := filepath.Abs(dir)
				if err != nil {
					return err
				}
				dir = abs
			}
			if dir == "" && runtime.GOOS != "windows" {
				if mounts, err := client.Mounts(cmd.Context()); err == nil {
					dir = sharedCwd(mounts)
				}
			}
			code, err := runExec(cmd, client, command, dir)
			if err != nil {
				return err
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringP("workdir", "w", "", "directory in the VM to start in (default: the current directory when it is shared, else /root)")
	cmd.RegisterFlagCompletionFunc("workdir", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return nil, cobra.ShellCompDirectiveFilterDirs
	})
	return cmd
}

// sharedCwd returns the current directory when it lies in a mounted share (shares sit at
// the same path in the VM), else "".
func sharedCwd(mounts []api.Mount) string {
	cwd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for _, m := range mounts {
		if m.State != "mounted" {
			continue
		}
		if rel, err := filepath.Rel(m.Path, cwd); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return cwd
		}
	}
	return ""
}

// runExec runs command (a login shell when empty) in the guest with this terminal
// attached; the guest side gets a pty when stdin is a terminal. It returns the exit code.
func runExec(cmd *cobra.Command, client *api.Client, command []string, dir string) (int, error) {
	stdinFd := int(os.Stdin.Fd())
	tty := term.IsTerminal(stdinFd)
	if len(command) == 0 {
		command = []string{"/bin/bash", "-l"}
	}
	req := api.ExecRequest{Argv: command, TTY: tty, Dir: dir}
	if tty {
		if cols, rows, err := term.GetSize(stdinFd); err == nil {
			req.Rows, req.Cols = uint16(rows), uint16(cols)
		}
		if t := os.Getenv("TERM"); t != "" {
			req.Env = append(req.Env, "TERM="+t)
		}
	}
	conn, err := client.Exec(cmd.Context(), req)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if tty {
		old, err := term.MakeRaw(stdinFd)
		if err != nil {
			return 0, err
		}
		defer term.Restore(stdinFd, old)
	}

	var wmu sync.Mutex
	send := func(kind byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return proto.WriteFrame(conn, kind, p)
	}
	if tty {
		watchResize(stdinFd, func(rows, cols uint16) { send(proto.FrameResize, proto.ResizePayload(rows, cols)) })
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 && send(proto.FrameStdin, buf[:n]) != nil {
				return
			}
			if err != nil {
				send(proto.FrameStdinClose, nil)
				return
			}
		}
	}()
	for {
		kind, payload, err := proto.ReadFrame(conn.R)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("connection to the VM closed before the command exited")
			}
			return 0, err
		}
		switch kind {
		case proto.FrameStdout:
			os.Stdout.Write(payload)
		case proto.FrameStderr:
			os.Stderr.Write(payload)
		case proto.FrameExit:
			return proto.ParseExit(payload)
		}
	}
}
