package guestagent

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// Bug 1b: Start stops the daemons an earlier serve process left running (one of them
// deaf to SIGTERM), removes dockerd's stale pid file and leaves the shims alone, so
// exactly one dockerd and one containerd run afterwards.
func TestStartReapsLeftoverDaemons(t *testing.T) {
	dir := fakeBins(t)
	type proc struct {
		cmd  *exec.Cmd
		done chan struct{}
	}
	start := func(name string, args ...string) proc {
		cmd := exec.Command(filepath.Join(dir, name), args...)
		// Like the old daemons, in their own process groups.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := proc{cmd, make(chan struct{})}
		go func() { cmd.Wait(); close(p.done) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
		return p
	}
	oldDockerd := start("dockerd", "--host=unix://"+filepath.Join(dir, "old.sock"), "--pidfile="+filepath.Join(dir, "old.pid"))
	deafDockerd := start("dockerd", "--ignore-term=1", "--pidfile="+filepath.Join(dir, "deaf.pid"))
	oldContainerd := start("containerd", "--address="+filepath.Join(dir, "oldcd.sock"), "--pidfile="+filepath.Join(dir, "oldcd.pid"))
	shim := start("containerd-shim-runc-v2")
	// The fakes write their pid files once their signal handling is set up.
	for _, f := range []string{"old.pid", "deaf.pid", "oldcd.pid"} {
		readPid(t, filepath.Join(dir, f))
	}
	for deadline := time.Now().Add(10 * time.Second); countProcs(dir, "dockerd") < 2 || countProcs(dir, "containerd") < 1 || countProcs(dir, "containerd-shim-runc-v2") < 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("leftovers did not start")
		}
	}
	// dockerd's pid file names a live process that is no dockerd (a reused pid): the new
	// dockerd would refuse to start.
	if err := os.WriteFile(filepath.Join(dir, "d.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}

	e := testEngine(t, dir, nil, nil)
	e.reapTimeout = 3 * time.Second // the race detector slows the fakes' exit
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]proc{"old dockerd": oldDockerd, "deaf dockerd": deafDockerd, "old containerd": oldContainerd} {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Fatalf("the %s still runs", name)
		}
	}
	if ws := deafDockerd.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the deaf dockerd ended with %v, want SIGKILL", deafDockerd.cmd.ProcessState)
	}
	if ws := oldDockerd.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Errorf("the old dockerd ended with %v, want a SIGTERM exit", oldDockerd.cmd.ProcessState)
	}
	select {
	case <-shim.done:
		t.Fatal("the shim was stopped")
	default:
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	if d, c := countProcs(dir, "dockerd"), countProcs(dir, "containerd"); d != 1 || c != 1 {
		t.Errorf("%d dockerd and %d containerd run, want one each", d, c)
	}
}

// findProcs and the reaper against a fake /proc: the match is by exe link, self and
// non-pid entries are skipped, a replaced binary still matches, TERM comes before KILL.
func TestReaperFakeProc(t *testing.T) {
	root := t.TempDir()
	link := func(pid int, exe string) {
		d := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.Remove(filepath.Join(d, "exe"))
		if exe != "" {
			if err := os.Symlink(exe, filepath.Join(d, "exe")); err != nil {
				t.Fatal(err)
			}
		}
	}
	link(10, "/usr/sbin/dockerd")
	link(11, "/usr/sbin/dockerd (deleted)")
	link(12, "/usr/bin/containerd")
	link(13, "/usr/bin/containerd-shim-runc-v2")
	link(14, "") // a kernel thread or zombie
	link(15, "/usr/sbin/dockerd")
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	match := exeMatcher("/usr/sbin/dockerd")
	if got := findProcs(root, match, 15); !slices.Equal(got, []int{10, 11}) {
		t.Errorf("dockerd pids = %v, want [10 11]", got)
	}
	if got := findProcs(root, exeMatcher("/usr/bin/containerd"), 1); !slices.Equal(got, []int{12}) {
		t.Errorf("containerd pids = %v, want [12]", got)
	}

	type sig struct {
		pid int
		sig syscall.Signal
	}
	var sent []sig
	r := &reaper{procRoot: root, self: 15, timeout: 200 * time.Millisecond, log: slog.New(slog.DiscardHandler),
		kill: func(pid int, s syscall.Signal) error {
			sent = append(sent, sig{pid, s})
			if pid == 10 || s == syscall.SIGKILL {
				link(pid, "") // 10 obeys SIGTERM; 11 only dies of SIGKILL
			}
			return nil
		}}
	r.reap("dockerd", match, "")
	// SIGCONT first: a leftover may have been left napping (EngineNap).
	want := []sig{{10, syscall.SIGCONT}, {10, syscall.SIGTERM}, {11, syscall.SIGCONT}, {11, syscall.SIGTERM}, {11, syscall.SIGKILL}}
	if !slices.Equal(sent, want) {
		t.Errorf("signals = %v, want %v", sent, want)
	}
}
