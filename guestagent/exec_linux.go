package guestagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
)

// exec runs a command for the host. Frames in: stdin, resize, stdin-close. Frames out:
// stdout, stderr, and one exit frame last.
func (s *Server) exec(ctx context.Context, st *yamux.Stream, req *proto.ExecRequest) error {
	if req == nil || len(req.Argv) == 0 {
		return reply(st, errors.New("exec: empty command"))
	}
	// The command may use the engine (`docker` in a `berth shell`).
	defer s.opts.Nap.Hold("a berth shell command")()
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Dir = req.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/root"
	}
	cmd.Env = append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"TERM=xterm-256color",
	}, req.Env...)

	var w frameWriter
	w.w = st
	var stdin io.WriteCloser
	var ptmx *os.File
	var outputs sync.WaitGroup
	if req.TTY {
		ws := &pty.Winsize{Rows: req.Rows, Cols: req.Cols}
		if ws.Rows == 0 || ws.Cols == 0 {
			ws.Rows, ws.Cols = 24, 80
		}
		f, err := pty.StartWithAttrs(cmd, ws, &syscall.SysProcAttr{Setsid: true, Setctty: true})
		if err != nil {
			return reply(st, fmt.Errorf("exec %s: %w", req.Argv[0], err))
		}
		ptmx, stdin = f, f
		if err := reply(st, nil); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			f.Close()
			return err
		}
		outputs.Add(1)
		go func() { defer outputs.Done(); w.copyFrom(proto.FrameStdout, f) }()
	} else {
		in, err := cmd.StdinPipe()
		if err != nil {
			return reply(st, err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return reply(st, err)
		}
		errp, err := cmd.StderrPipe()
		if err != nil {
			return reply(st, err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return reply(st, fmt.Errorf("exec %s: %w", req.Argv[0], err))
		}
		stdin = in
		if err := reply(st, nil); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return err
		}
		outputs.Add(2)
		go func() { defer outputs.Done(); w.copyFrom(proto.FrameStdout, out) }()
		go func() { defer outputs.Done(); w.copyFrom(proto.FrameStderr, errp) }()
	}

	// Input from the host. The stream ending without an exit means the host went away:
	// the process gets a hangup, as a terminal user's shell would.
	exited := make(chan struct{})
	waitExit := func() error {
		defer close(exited)
		return cmd.Wait()
	}
	go func() {
		for {
			kind, payload, err := proto.ReadFrame(st)
			if err != nil {
				// The host is gone: hang up, as a terminal would, and kill what ignores
				// that, so no process (and no goroutine waiting on it) outlives the
				// session. Process.Kill uses a pidfd: never a reused pid.
				if cmd.Process != nil {
					cmd.Process.Signal(syscall.SIGHUP)
					kill := time.AfterFunc(5*time.Second, func() { cmd.Process.Kill() })
					<-exited
					kill.Stop()
				}
				return
			}
			switch kind {
			case proto.FrameStdin:
				stdin.Write(payload)
			case proto.FrameStdinClose:
				if ptmx == nil {
					stdin.Close()
				} else {
					// A terminal has no half-close; EOT ends the line discipline's input.
					ptmx.Write([]byte{4})
				}
			case proto.FrameResize:
				if rows, cols, err := proto.ParseResize(payload); err == nil && ptmx != nil {
					pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols})
				}
			}
		}
	}()

	var code int
	if ptmx != nil {
		// With a pty the output ends (EIO) only when every holder of the slave side is
		// gone; wait for the process first, then drain.
		// A background job that keeps the terminal open must not hold the session, so the
		// drain is bounded.
		code = exitCode(cmd.Wait())
		drained := make(chan struct{})
		go func() { outputs.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(2 * time.Second):
		}
		ptmx.Close()
	} else {
		outputs.Wait()
		code = exitCode(waitExit())
	}
	return w.frame(proto.FrameExit, proto.ExitPayload(code))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 127
}
