// Package instance is what the CLI and the tray do to instances: start (spawning the host
// daemon), stop, status, delete. Both front ends are thin layers over it.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/berth-dev/berth/fileshare"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/store"
)

// ErrNotRunning is returned for an instance without a live daemon.
var ErrNotRunning = errors.New("not running")

// Client returns a control API client for a running instance.
func Client(inst *store.Instance) *api.Client {
	return api.NewClient(inst.Path(store.ControlSock))
}

// Status returns the live status, or the recorded one when no daemon runs.
func Status(ctx context.Context, inst *store.Instance) (api.Status, error) {
	if inst.DaemonPID() != 0 {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := Client(inst).Status(cctx)
		if err == nil {
			return st, nil
		}
		return api.Status{Name: inst.Name, State: api.StateError, PID: inst.DaemonPID(),
			Error: fmt.Sprintf("daemon (pid %d) does not answer: %v", inst.DaemonPID(), err)}, nil
	}
	cfg, err := inst.Config()
	st := api.Status{
		Name:          inst.Name,
		State:         api.StateStopped,
		DockerSocket:  inst.Path(store.DockerSock),
		DockerContext: dockerctx.Name(inst.Name),
	}
	if errors.Is(err, store.ErrIncompatible) {
		st.State, st.Error = api.StateIncompatible, err.Error()
		return st, nil
	}
	if err != nil {
		st.State = api.StateBroken
		st.Error = err.Error()
		return st, nil
	}
	st.Arch, st.CPUs, st.MemoryGiB, st.MemoryMiB, st.DiskGiB = cfg.Arch, cfg.CPUs, cfg.Memory, cfg.MemoryMiB(), cfg.Disk
	if rec := inst.ReadState(); rec.State == api.StateError {
		st.Error = "last run failed: " + rec.Error
	}
	return st, nil
}

// ErrStarting: another start (or a delete) of the instance is in progress, or its daemon
// is still booting. ErrRunning: its daemon runs. Start's errors wrap them.
var (
	ErrStarting = errors.New("already starting")
	ErrRunning  = errors.New("already running")
)

// busyError is a clear message that also matches ErrStarting or ErrRunning.
type busyError struct {
	kind    error
	msg     string
	exiting bool // the daemon is on its way out (its VM stopped or died)
}

func (e *busyError) Error() string { return e.msg }
func (e *busyError) Unwrap() error { return e.kind }

// Starter holds an instance's operation lock for one start: two starts of one instance
// (two CLIs, the tray and a CLI) never overlap, and only the holder touches the config,
// the daemon's log and spawns a daemon. Release it when done.
type Starter struct {
	inst *store.Instance
	lock *store.Lock
}

// LockStart takes inst's operation lock for a start. When another start or a delete holds
// it, the error names it and wraps ErrStarting.
func LockStart(inst *store.Instance) (*Starter, error) {
	lock, err := inst.LockOp("start")
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, opBusy(inst)
		}
		return nil, err
	}
	return &Starter{inst: inst, lock: lock}, nil
}

// opBusy describes the holder of inst's operation lock.
func opBusy(inst *store.Instance) error {
	pid, op := inst.OpHolder()
	by := ""
	if pid > 0 {
		by = fmt.Sprintf(" (pid %d)", pid)
	}
	if op == "delete" {
		return &busyError{kind: ErrStarting, msg: fmt.Sprintf("instance %q is being deleted%s", inst.Name, by)}
	}
	return &busyError{kind: ErrStarting, msg: fmt.Sprintf("instance %q is already starting%s; run `berth status %s`", inst.Name, by, inst.Name)}
}

// Release drops the lock; it may be called more than once.
func (s *Starter) Release() {
	if s.lock != nil {
		s.lock.Release()
		s.lock = nil
	}
}

// exitingWait bounds how long a start waits for a daemon that is on its way out: one
// whose VM was stopped, or died (kill -9 of the VM), and that is still releasing what it
// held. Its own shutdown is bounded well below this.
var exitingWait = 30 * time.Second

// Busy returns nil when no daemon holds the instance, else an error saying whether it is
// running (wraps ErrRunning) or still starting or stopping (wraps ErrStarting). A daemon
// that is stopping, or has stopped or failed and not yet exited, is waited for (up to
// exitingWait): the start then goes on as if it had been gone.
func (s *Starter) Busy(ctx context.Context) error {
	err := daemonBusy(ctx, s.inst)
	deadline := time.Now().Add(exitingWait)
	for {
		var b *busyError
		if !errors.As(err, &b) || !b.exiting || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
		err = daemonBusy(ctx, s.inst)
	}
}

func daemonBusy(ctx context.Context, inst *store.Instance) error {
	pid := inst.DaemonPID()
	if pid == 0 {
		return nil
	}
	state := ""
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if st, err := Client(inst).Status(cctx); err == nil {
		state = st.State
	} else if rec := inst.ReadState(); rec.PID == pid {
		state = rec.State
	}
	cancel()
	switch state {
	case api.StateStarting:
		return &busyError{kind: ErrStarting, msg: fmt.Sprintf("instance %q is already starting (daemon pid %d); run `berth status %s`", inst.Name, pid, inst.Name)}
	case api.StateStopping, api.StateStopped, api.StateError:
		return &busyError{kind: ErrStarting, exiting: true, msg: fmt.Sprintf("instance %q is stopping (daemon pid %d, state %s) and has not exited; start it again once `berth status %s` says Stopped", inst.Name, pid, state, inst.Name)}
	}
	return &busyError{kind: ErrRunning, msg: fmt.Sprintf("instance %q is already running (daemon pid %d); use `berth restart %s` to restart it", inst.Name, pid, inst.Name)}
}

// hostdCommand builds the daemon's command; tests replace it.
var hostdCommand = func(name string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(self, "hostd", name), nil
}

// Start takes the instance's start lock, spawns the host daemon and reports its events to
// progress until the instance runs or fails. A start already in progress makes it fail at
// once with an error wrapping ErrStarting; a running instance, ErrRunning.
func Start(ctx context.Context, inst *store.Instance, progress func(api.Event)) error {
	s, err := LockStart(inst)
	if err != nil {
		return err
	}
	defer s.Release()
	return s.Start(ctx, progress)
}

// Start spawns the host daemon and reports its events to progress until the instance runs
// or fails. The lock is held throughout; the caller releases it.
func (s *Starter) Start(ctx context.Context, progress func(api.Event)) error {
	inst := s.inst
	if s.lock == nil {
		return errors.New("instance start: the start lock was released")
	}
	if err := s.Busy(ctx); err != nil {
		return err
	}
	cfg, err := inst.Config()
	if err != nil {
		return err
	}
	if err := inst.UpgradeFormat(); err != nil { // a directory of an older berth
		return err
	}
	if err := fileshare.Validate(cfg.Shares); err != nil {
		return fmt.Errorf("invalid shares in %s: %w", inst.Path(store.ConfigFile), err)
	}
	// No guest image installed and BERTH_IMAGE_URL set: download the bundle before the
	// daemon looks for it (host/image). Without a URL this does nothing.
	if err := image.EnsureFor(ctx, cfg, os.Stderr); err != nil {
		return err
	}
	cmd, err := hostdCommand(inst.Name)
	if err != nil {
		return err
	}
	// Only the holder of the start lock gets here, and no daemon runs: the log is this
	// start's. It is appended to, so a daemon of an earlier run that is still writing its
	// last line cannot punch a hole into it.
	logf, err := store.OpenPrivate(inst.Path(store.HostdLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach()
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	spawned := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start the berth daemon: %w", err)
	}
	// Closed when the spawned daemon exits: any number of waits below can watch it.
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	// ours fails when a daemon other than the one just spawned holds the instance: one
	// started without this lock (by hand, or by an older berth).
	ours := func() error {
		if pid := inst.DaemonPID(); pid != 0 && pid != cmd.Process.Pid {
			return daemonBusy(ctx, inst)
		}
		return nil
	}

	// Wait for the control socket; the daemon binds it before anything slow.
	client := Client(inst)
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := client.Status(cctx)
		cancel()
		if err == nil {
			if st.PID != 0 && st.PID != cmd.Process.Pid {
				if err := ours(); err != nil {
					return err
				}
			}
			break
		}
		select {
		case <-exited:
			if err := ours(); err != nil {
				return err
			}
			if rec := inst.ReadState(); rec.State == api.StateError && rec.Error != "" {
				return errors.New(rec.Error)
			} else if rec.State == api.StateStopped && recordedSince(inst, spawned) {
				// A stop came before this start got to see the daemon's events.
				return fmt.Errorf("instance %q stopped during start; see %s", inst.Name, inst.Path(store.HostdLog))
			}
			return fmt.Errorf("the berth daemon exited at once: %s", lastLines(inst.Path(store.HostdLog), 5))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the berth daemon did not open %s in 15s; see %s", inst.Path(store.ControlSock), inst.Path(store.HostdLog))
		}
	}

	var final api.Event
	err = client.Events(ctx, func(ev api.Event) bool {
		if progress != nil {
			progress(ev)
		}
		final = ev
		switch ev.State {
		case api.StateRunning, api.StateDegraded, api.StateError, api.StateStopped:
			return false
		}
		return true
	})
	switch final.State {
	case api.StateRunning, api.StateDegraded:
		cmd.Process.Release()
		return nil
	case api.StateError, api.StateStopped:
		waitExited(exited, 30*time.Second)
		if final.Error != "" {
			return errors.New(final.Error)
		}
		return fmt.Errorf("instance %q stopped during start; see %s", inst.Name, inst.Path(store.HostdLog))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// The daemon may have gone between the status and the events (a stop came): its
		// recorded state tells.
		if !waitExited(exited, 5*time.Second) {
			return err
		}
	}
	if !waitExited(exited, 30*time.Second) {
		return fmt.Errorf("the berth daemon (pid %d) ended its events but did not exit; see %s", cmd.Process.Pid, inst.Path(store.HostdLog))
	}
	rec := inst.ReadState()
	if rec.Error != "" {
		return errors.New(rec.Error)
	}
	if rec.State == api.StateStopped && recordedSince(inst, spawned) {
		return fmt.Errorf("instance %q stopped during start; see %s", inst.Name, inst.Path(store.HostdLog))
	}
	return fmt.Errorf("the berth daemon exited during start: %s", lastLines(inst.Path(store.HostdLog), 5))
}

// waitExited waits, at most d, for the spawned daemon to exit.
func waitExited(exited <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
		return false
	}
}

// Stop stops a running instance and waits until its daemon is gone. A start that holds
// the start lock but has not spawned its daemon yet is waited for (within ctx), so the
// stop is not lost; a daemon that has taken its lock but not yet opened its control
// socket is asked again until it answers.
func Stop(ctx context.Context, inst *store.Instance, force bool) error {
	pid := inst.DaemonPID()
	for pid == 0 {
		spid, op := inst.OpHolder()
		if spid == 0 || (spid > 0 && op != "start") {
			if pid = inst.DaemonPID(); pid != 0 {
				break
			}
			return fmt.Errorf("instance %q is %w", inst.Name, ErrNotRunning)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("instance %q is %w yet: a start (pid %d) is still preparing it; run `berth stop %s` again in a moment",
				inst.Name, ErrNotRunning, spid, inst.Name)
		case <-time.After(20 * time.Millisecond):
		}
		pid = inst.DaemonPID()
	}
	client := Client(inst)
	for {
		err := client.Stop(ctx, force)
		if err == nil || errors.Is(err, io.EOF) || inst.DaemonPID() == 0 {
			break
		}
		// The daemon binds its control socket just after taking its lock.
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
	// The daemon drops its lock as it exits; wait for that so a following start works (a
	// daemon another start spawned meanwhile is not this stop's).
	for inst.DaemonPID() == pid {
		select {
		case <-ctx.Done():
			return fmt.Errorf("daemon (pid %d) did not exit: %w", pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Delete removes the instance. The data disk (images, containers, volumes) is kept
// unless withData; a running instance is refused unless force, which stops it first.
func Delete(ctx context.Context, inst *store.Instance, withData, force bool) error {
	// Hold the operation lock, so no start runs while the files go. A start in progress is
	// stopped first with force (its daemon, once it has one), else refused.
	var lock *store.Lock
	for {
		l, err := inst.LockOp("delete")
		if err == nil {
			lock = l
			break
		}
		if !errors.Is(err, store.ErrLocked) {
			return err
		}
		if !force {
			return fmt.Errorf("%w; stop it first or pass --force", opBusy(inst))
		}
		if err := Stop(ctx, inst, true); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", opBusy(inst), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer lock.Release()
	if inst.DaemonPID() != 0 {
		if !force {
			return fmt.Errorf("instance %q is running; stop it first or pass --force", inst.Name)
		}
		if err := Stop(ctx, inst, true); err != nil {
			return err
		}
	}
	if err := dockerctx.Remove(dockerctx.Name(inst.Name)); err != nil {
		return fmt.Errorf("failed to remove the docker context: %w", err)
	}
	if withData {
		return os.RemoveAll(inst.Dir)
	}
	entries, err := os.ReadDir(inst.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == store.DataDisk {
			continue
		}
		if err := os.RemoveAll(inst.Path(e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// recordedSince reports whether state.json was written at or after t.
func recordedSince(inst *store.Instance, t time.Time) bool {
	fi, err := os.Stat(inst.Path(store.StateFile))
	return err == nil && !fi.ModTime().Before(t.Add(-time.Second)) // coarse file clocks
}

func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
