package guestagent

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reapLeftovers stops the daemons of an earlier serve process. Their serve process was
// killed before they were (PDEATHSIG covers that since, but not an earlier agent, nor a
// daemon whose forking thread was not the one that died), they were reparented to PID 1
// and still run: a second dockerd beside them would fight over /var/lib/docker. dockerd
// goes first (it stops its containers through containerd), then containerd. The shims
// (containerd-shim-*) are other binaries and are left alone, so containers survive as far
// as dockerd allows. dockerd's stale pid file is removed: its pid may have been reused.
func (e *Engine) reapLeftovers() {
	r := &reaper{
		procRoot: orDefault(e.procRoot, "/proc"),
		self:     os.Getpid(),
		timeout:  orDefault(e.reapTimeout, defaultReapTimeout),
		kill:     syscall.Kill,
		log:      e.Log,
	}
	pidfile := argValue(e.Dockerd, "--pidfile", "-p")
	if len(e.Dockerd) > 0 {
		r.reap("dockerd", exeMatcher(e.Dockerd[0]), pidfile)
	}
	if len(e.Containerd) > 0 {
		r.reap("containerd", exeMatcher(e.Containerd[0]), "")
	}
	if pidfile != "" {
		if err := os.Remove(pidfile); err == nil {
			e.Log.Info("removed a stale pid file", "path", pidfile)
		}
	}
}

// reaper stops processes found by their executable under procRoot.
type reaper struct {
	procRoot string
	self     int // never signalled
	timeout  time.Duration
	kill     func(pid int, sig syscall.Signal) error
	log      *slog.Logger
}

// reap sends SIGTERM to every process whose executable matches (and to the one in
// pidfile, if its executable does), waits up to the timeout for them to go, and SIGKILLs
// the rest.
func (r *reaper) reap(name string, match func(exe string) bool, pidfile string) {
	pids := findProcs(r.procRoot, match, r.self)
	if pidfile != "" {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != r.self && r.is(pid, match) && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 {
		return
	}
	r.log.Warn("stopping leftover daemons of an earlier serve process", "daemon", name, "pids", pids)
	for _, pid := range pids {
		_ = r.kill(pid, syscall.SIGTERM)
	}
	alive := r.wait(pids, match, r.timeout)
	if len(alive) == 0 {
		return
	}
	r.log.Warn("leftover daemons did not stop in time; killing them", "daemon", name, "pids", alive, "timeout", r.timeout)
	for _, pid := range alive {
		_ = r.kill(pid, syscall.SIGKILL)
	}
	if alive = r.wait(alive, match, 5*time.Second); len(alive) > 0 {
		r.log.Error("leftover daemons survived SIGKILL", "daemon", name, "pids", alive)
	}
}

// wait polls until none of pids is a matching process any more (a zombie has no exe) or
// timeout passes, and returns those that still are.
func (r *reaper) wait(pids []int, match func(string) bool, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if r.is(pid, match) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || !time.Now().Before(deadline) {
			return alive
		}
		pids = alive
		time.Sleep(20 * time.Millisecond)
	}
}

// is reports whether pid is a live process whose executable matches.
func (r *reaper) is(pid int, match func(string) bool) bool {
	exe, err := os.Readlink(filepath.Join(r.procRoot, strconv.Itoa(pid), "exe"))
	return err == nil && match(exe)
}

// findProcs returns the pids under procRoot, other than self, whose exe link matches.
// Kernel threads and zombies have no readable exe and never match.
func findProcs(procRoot string, match func(exe string) bool, self int) []int {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid <= 0 || pid == self {
			continue
		}
		exe, err := os.Readlink(filepath.Join(procRoot, ent.Name(), "exe"))
		if err == nil && match(exe) {
			pids = append(pids, pid)
		}
	}
	return pids
}
