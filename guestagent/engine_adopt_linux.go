package guestagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// adoptOrReap deals with the daemons an earlier serve process left running (they outlive
// it), dockerd first (it stops its containers through containerd), then containerd. A
// lone leftover that answers is adopted and returned; several, or one that does not
// answer within the adopt timeout, are stopped (SIGTERM, then SIGKILL after the reap
// timeout), since a second dockerd beside them would fight over /var/lib/docker. The
// shims (containerd-shim-*) are other binaries and are left alone, so containers survive
// as far as dockerd allows. Unless dockerd is adopted its pid file is removed: its pid
// may have been reused.
func (e *Engine) adoptOrReap() (dockerd, containerd, registry instance) {
	r := &reaper{
		procRoot: orDefault(e.procRoot, "/proc"),
		self:     os.Getpid(),
		timeout:  orDefault(e.reapTimeout, defaultReapTimeout),
		kill:     syscall.Kill,
		log:      e.Log,
	}
	pidfile := argValue(e.Dockerd, "--pidfile", "-p")
	if len(e.Dockerd) > 0 {
		dockerd = e.adoptOrReapOne(r, "dockerd", exeMatcher(e.Dockerd[0]), pidfile, func(ctx context.Context) error {
			c := e.client()
			defer c.Close()
			return e.pingDockerd(ctx, c)
		})
	}
	if len(e.Containerd) > 0 {
		containerd = e.adoptOrReapOne(r, "containerd", exeMatcher(e.Containerd[0]), "", e.dialContainerd)
	}
	if len(e.Registry) > 0 {
		addr := argValue(e.Registry, "-addr", "")
		if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		registry = e.adoptOrReapOne(r, "registry", exeMatcher(e.Registry[0]), "", func(ctx context.Context) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if dockerd == nil && pidfile != "" {
		if err := os.Remove(pidfile); err == nil {
			e.Log.Info("removed a stale pid file", "path", pidfile)
		}
	}
	return dockerd, containerd, registry
}

// adoptOrReapOne adopts the one leftover daemon found by match (or pidfile) if it
// answers, and otherwise stops every one found. It returns the adopted one, or nil.
func (e *Engine) adoptOrReapOne(r *reaper, name string, match func(string) bool, pidfile string, answers func(context.Context) error) instance {
	pids := r.find(match, pidfile)
	switch len(pids) {
	case 0:
		return nil
	case 1:
		p, err := adopt(r, pids[0], match, answers, orDefault(e.adoptTimeout, defaultAdoptTimeout))
		if err == nil {
			e.Log.Info("adopting the running daemon of an earlier serve process", "daemon", name, "pid", pids[0])
			return p
		}
		e.Log.Warn("cannot adopt the running daemon of an earlier serve process", "daemon", name, "pid", pids[0], "err", err)
	default:
		e.Log.Warn("several daemons of an earlier serve process run; none is adopted", "daemon", name, "pids", pids)
	}
	r.stop(name, pids, match)
	return nil
}

// adopt opens a pidfd for pid, a process whose executable matches, and waits up to
// timeout for answers to succeed.
func adopt(r *reaper, pid int, match func(string) bool, answers func(context.Context) error, timeout time.Duration) (*adoptedProc, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open: %w", err)
	}
	p := &adoptedProc{pidv: pid, fd: fd}
	// The pidfd names whatever process had pid when it was opened: that one still runs
	// (so its pid was not reused since) and still is the daemon.
	if !r.is(pid, match) || p.exited() {
		p.close()
		return nil, errors.New("it exited")
	}
	// An earlier serve process may have left it napping (EngineNap).
	_ = p.signal(syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err := answers(ctx)
		if err == nil {
			return p, nil
		}
		if p.exited() {
			p.close()
			return nil, fmt.Errorf("it exited (%v)", err)
		}
		select {
		case <-ctx.Done():
			p.close()
			return nil, fmt.Errorf("it did not answer within %s: %v", timeout, err)
		case <-time.After(readyPoll):
		}
	}
}

// adoptedProc is a daemon of an earlier serve process, held by a pidfd: it is not a
// child of this process (PID 1 reaps it), so it is waited for by polling the pidfd, which
// turns readable when it exits, and signalled through the pidfd, never by a reused pid.
type adoptedProc struct {
	pidv int
	mu   sync.Mutex
	fd   int // -1 once closed
}

func (p *adoptedProc) pid() int { return p.pidv }

func (p *adoptedProc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd < 0 {
		return os.ErrProcessDone
	}
	return unix.PidfdSendSignal(p.fd, sig, nil, 0)
}

// exited reports whether the process has exited, without waiting.
func (p *adoptedProc) exited() bool {
	return p.poll(0)
}

// poll waits up to ms milliseconds (-1: no limit) for the pidfd to turn readable.
func (p *adoptedProc) poll(ms int) bool {
	fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// wait returns once the process has exited, and closes the pidfd. The exit status
// belongs to PID 1.
func (p *adoptedProc) wait() error {
	for !p.poll(-1) {
		time.Sleep(time.Second) // poll failed; never seen, but never spin
	}
	p.close()
	return fmt.Errorf("adopted process %d exited", p.pidv)
}

func (p *adoptedProc) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}
