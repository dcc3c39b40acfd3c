//go:build linux

package guestagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// serveStopTimeout is how long a shutdown waits for the serve process to stop the
	// engine and exit.
	serveStopTimeout = 20 * time.Second
	// orphanStopTimeout is how long the remaining processes get after SIGTERM.
	orphanStopTimeout = 5 * time.Second

	minRestartDelay = time.Second
	maxRestartDelay = 30 * time.Second
	// stableRun: a serve process that ran this long resets the restart backoff.
	stableRun = time.Minute
)

// supervisor is PID 1 after boot: it runs the serve process, reaps every process that
// ends up orphaned, and turns power-off requests into an orderly shutdown. One goroutine
// owns all of its state.
//
// PID 1 reaps with wait4(-1), so it must never use exec.Cmd.Wait itself once the loop
// runs; the serve process is a separate process, so its own Waits are unaffected.
type supervisor struct {
	log   *slog.Logger
	sigs  chan os.Signal
	chld  <-chan os.Signal // SIGCHLD only: one waiting there stands for any number
	power chan string      // reasons from the power button watcher
	out   *os.File         // the serve process's stdout and stderr
	env   []string

	serve    *os.Process
	started  time.Time
	backoff  time.Duration
	restartC <-chan time.Time
	stopping bool
}

func (s *supervisor) run() {
	s.startServe()
	for {
		select {
		case <-s.chld:
			s.reapAll()
		case sig := <-s.sigs:
			s.handleSignal(sig)
		case why := <-s.power:
			s.shutdown(why)
		case <-s.restartC:
			s.restartC = nil
			s.startServe()
		}
	}
}

func (s *supervisor) startServe() {
	// /proc/self/exe still execs the agent after the initramfs it came from is gone.
	cmd := exec.Command("/proc/self/exe", "serve")
	cmd.Args[0] = "berth-agent"
	cmd.Stdout, cmd.Stderr = s.out, s.out
	cmd.Env = s.env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		s.log.Error("failed to start the serve process", "err", err)
		s.scheduleRestart()
		return
	}
	s.serve = cmd.Process
	s.log.Info("serve process started", "pid", s.serve.Pid)
}

func (s *supervisor) scheduleRestart() {
	if time.Since(s.started) >= stableRun {
		s.backoff = minRestartDelay
	}
	delay := s.backoff
	s.backoff = min(s.backoff*2, maxRestartDelay)
	s.log.Warn("restarting the serve process", "in", delay)
	s.restartC = time.After(delay)
}

func (s *supervisor) handleSignal(sig os.Signal) {
	switch sig {
	case unix.SIGTERM, unix.SIGINT, unix.SIGPWR:
		s.shutdown("signal " + sig.String())
	default:
		s.log.Debug("ignoring signal", "signal", sig)
	}
}

// reapAll collects every exited child; it reports whether PID 1 has no children left.
func (s *supervisor) reapAll() (none bool) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return errors.Is(err, unix.ECHILD)
		}
		if pid <= 0 {
			return false
		}
		if s.serve != nil && pid == s.serve.Pid {
			s.serveExited(ws)
		}
	}
}

func (s *supervisor) serveExited(ws unix.WaitStatus) {
	level := slog.LevelError
	if s.stopping {
		level = slog.LevelInfo
	}
	s.log.Log(context.Background(), level, "serve process exited", "pid", s.serve.Pid,
		"status", waitStatusString(ws), "ran", time.Since(s.started).Round(time.Millisecond))
	_ = s.serve.Release()
	s.serve = nil
	if !s.stopping {
		s.scheduleRestart()
	}
}

func waitStatusString(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("%#x", uint32(ws))
}

// shutdown stops everything and powers off: the serve process first (it stops the engine
// cleanly), then whatever is left, then the disks.
func (s *supervisor) shutdown(reason string) {
	s.log.Info("shutting down", "reason", reason)
	s.stopping = true
	s.restartC = nil
	if s.serve != nil {
		_ = s.serve.Signal(unix.SIGTERM)
		if !s.waitFor(serveStopTimeout, func() bool { return s.serve == nil }) {
			s.log.Warn("serve process did not stop in time; killing it", "timeout", serveStopTimeout)
			_ = s.serve.Kill()
			s.waitFor(2*time.Second, func() bool { return s.serve == nil })
		}
	}
	// kill(-1) from PID 1 reaches every other process.
	if !s.reapAll() {
		_ = unix.Kill(-1, unix.SIGTERM)
		if !s.waitFor(orphanStopTimeout, s.reapAll) {
			s.log.Warn("processes left after SIGTERM; killing them")
			_ = unix.Kill(-1, unix.SIGKILL)
			s.waitFor(2*time.Second, s.reapAll)
		}
	}
	err := powerOff()
	s.log.Error("power off failed", "err", err)
	for {
		time.Sleep(time.Hour)
	}
}

// waitFor reaps children until done() holds or the timeout passes.
func (s *supervisor) waitFor(timeout time.Duration, done func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		s.reapAll()
		if done() {
			return true
		}
		select {
		case <-s.chld:
		case sig := <-s.sigs:
			s.log.Info("already shutting down; ignoring signal", "signal", sig)
		case <-s.power:
		case <-tick.C:
		case <-deadline.C:
			return false
		}
	}
}
