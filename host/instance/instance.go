// Package instance is what the CLI and the tray do to instances: start (spawning the host
// daemon), stop, status, delete. Both front ends are thin layers over it.
package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	if err != nil {
		st.State = "Broken"
		st.Error = err.Error()
		return st, nil
	}
	st.Arch, st.CPUs, st.MemoryGiB, st.DiskGiB = cfg.Arch, cfg.CPUs, cfg.Memory, cfg.Disk
	if rec := inst.ReadState(); rec.State == api.StateError {
		st.Error = "last run failed: " + rec.Error
	}
	return st, nil
}

// Start spawns the host daemon for inst and reports its events to progress until the
// instance runs or fails.
func Start(ctx context.Context, inst *store.Instance, progress func(api.Event)) error {
	if pid := inst.DaemonPID(); pid != 0 {
		return fmt.Errorf("instance %q is already running (daemon pid %d); use `berth restart %s` to restart it", inst.Name, pid, inst.Name)
	}
	cfg, err := inst.Config()
	if err != nil {
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
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(inst.Path(store.HostdLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "hostd", inst.Name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detach()
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start the berth daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait for the control socket; the daemon binds it before anything slow.
	client := Client(inst)
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Status(cctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			if rec := inst.ReadState(); rec.State == api.StateError && rec.Error != "" {
				return errors.New(rec.Error)
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
		<-exited
		if final.Error != "" {
			return errors.New(final.Error)
		}
		return fmt.Errorf("instance %q stopped during start; see %s", inst.Name, inst.Path(store.HostdLog))
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	<-exited
	rec := inst.ReadState()
	if rec.Error != "" {
		return errors.New(rec.Error)
	}
	return fmt.Errorf("the berth daemon exited during start: %s", lastLines(inst.Path(store.HostdLog), 5))
}

// Stop stops a running instance and waits until its daemon is gone.
func Stop(ctx context.Context, inst *store.Instance, force bool) error {
	pid := inst.DaemonPID()
	if pid == 0 {
		return fmt.Errorf("instance %q is %w", inst.Name, ErrNotRunning)
	}
	if err := Client(inst).Stop(ctx, force); err != nil && !errors.Is(err, io.EOF) {
		if inst.DaemonPID() != 0 {
			return err
		}
	}
	// The daemon drops its lock as it exits; wait for that so a following start works.
	for inst.DaemonPID() != 0 {
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
