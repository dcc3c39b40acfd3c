//go:build darwin || linux

package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/host/localsock"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/netproxy/clusternet"
)

// netdStartTimeout bounds how long EnsureNetd waits for a netd it started to answer.
const netdStartTimeout = 15 * time.Second

// lockFile takes an exclusive flock on path, waiting at most 10 s; the returned func
// releases it.
func lockFile(path string) (func(), error) {
	f, err := store.OpenPrivate(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("failed to lock %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RunNetd is `berth netd NAME`: it serves the cluster's switch on its control socket until
// ctx ends or a stop request comes. A second netd for the same cluster exits at once
// without error (two members starting together both try to start one).
func RunNetd(ctx context.Context, name string, log *slog.Logger) error {
	rec, err := Load(name)
	if err != nil {
		return err
	}
	lockPath, _ := Path(name, NetdLock)
	f, err := store.OpenPrivate(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			log.Info("netd already running; exiting")
			return nil
		}
		return fmt.Errorf("failed to lock %s: %w", lockPath, err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	defer os.Remove(lockPath)

	sock, _ := Path(name, NetdSock)
	ln, err := localsock.Listen(sock)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sw := clusternet.NewSwitch(log)
	defer sw.Close()
	srv := &clusternet.Server{
		Switch: sw,
		Log:    log,
		Admit: func(member string) (clusternet.Member, error) {
			r, err := Load(name) // members may have changed since netd started
			if err != nil {
				return clusternet.Member{}, err
			}
			m, err := r.Member(member)
			if err != nil {
				return clusternet.Member{}, err
			}
			return clusternet.Member{MAC: m.MAC}, nil
		},
		Stop: cancel,
	}
	log.Info("cluster network up", "subnet", rec.Subnet, "socket", sock)
	err = srv.Serve(ctx, localsock.PeerCredListener(ln, log))
	log.Info("cluster network down")
	return err
}

// NetdRunning reports the pid of the cluster's running netd (0: none answers).
func NetdRunning(ctx context.Context, name string) int {
	sock, err := Path(name, NetdSock)
	if err != nil {
		return 0
	}
	rep, err := clusternet.Status(ctx, sock)
	if err != nil {
		return 0
	}
	return rep.PID
}

// NetdStatus returns the running netd's view: its pid and attached members.
func NetdStatus(ctx context.Context, name string) (clusternet.Reply, error) {
	sock, err := Path(name, NetdSock)
	if err != nil {
		return clusternet.Reply{}, err
	}
	return clusternet.Status(ctx, sock)
}

// EnsureNetd starts the cluster's netd unless one answers, and returns its socket. netd
// runs detached from the caller (its own session), so it outlives the member that started it.
func EnsureNetd(ctx context.Context, name string) (string, error) {
	sock, err := Path(name, NetdSock)
	if err != nil {
		return "", err
	}
	if _, err := clusternet.Status(ctx, sock); err == nil {
		return sock, nil
	}
	if _, err := Load(name); err != nil {
		return "", err
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("failed to find the berth executable to start the cluster network: %w", err)
	}
	logPath, _ := Path(name, NetdLog)
	logf, err := store.OpenPrivate(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(exe, "netd", name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", fmt.Errorf("failed to start the cluster network daemon: %w", err)
	}
	logf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it; netd runs on after this process exits
	deadline := time.Now().Add(netdStartTimeout)
	for {
		if _, err := clusternet.Status(ctx, sock); err == nil {
			return sock, nil
		}
		select {
		case err := <-exited:
			// A netd that lost the race to another exits at once; that one answers soon.
			if err != nil {
				return "", fmt.Errorf("the cluster network daemon exited: %v (see %s)", err, logPath)
			}
			exited = nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the cluster network daemon did not answer within %s (see %s)", netdStartTimeout, logPath)
		}
	}
}

// StopNetd stops the cluster's netd, if one runs, and waits (bounded) until it is gone.
func StopNetd(ctx context.Context, name string) error {
	sock, err := Path(name, NetdSock)
	if err != nil {
		return err
	}
	pid, err := clusternet.Stop(ctx, sock)
	if err != nil {
		lockPath, _ := Path(name, NetdLock)
		if b, rerr := os.ReadFile(lockPath); rerr == nil && held(lockPath) {
			return fmt.Errorf("the cluster network daemon (pid %s) holds %s but does not answer: %w", strings.TrimSpace(string(b)), lockPath, err)
		}
		return nil // none runs
	}
	// netd holds its lock until it has closed its socket and every link.
	lockPath, _ := Path(name, NetdLock)
	deadline := time.Now().Add(10 * time.Second)
	for held(lockPath) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster network daemon (pid %d) did not exit within 10s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// held reports whether a process holds the flock on path.
func held(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
