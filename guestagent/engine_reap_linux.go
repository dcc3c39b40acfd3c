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
	r.stop(name, r.find(match, pidfile), match)
}

// find returns the processes whose executable matches, and the one in pidfile if its
// executable does.
func (r *reaper) find(match func(exe string) bool, pidfile string) []int {
	pids := findProcs(r.procRoot, match, r.self)
	if pidfile != "" {
		if b, err := os.ReadFile(pidfile); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && pid != r.self && r.is(pid, match) && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// stop sends SIGTERM to pids, waits up to the timeout for them to go, and SIGKILLs the
// rest.
func (r *reaper) stop(name string, pids []int, match func(exe string) bool) {
	if len(pids) == 0 {
		return
	}
	r.log.Warn("stopping leftover daemons of an earlier serve process", "daemon", name, "pids", pids)
	for _, pid := range pids {
		_ = r.kill(pid, syscall.SIGCONT) // it may have been left napping (EngineNap)
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
