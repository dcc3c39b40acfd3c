//go:build linux

package guestagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// The test binary doubles as the fake daemons: linked under the name "dockerd",
// "containerd" or "containerd-shim-runc-v2" it runs fakeDaemon, and as "fake-serve" a
// serve process that starts an Engine. The engine gives its daemons a fixed environment,
// so the mode comes from the name and the flags.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "dockerd", "containerd", "containerd-shim-runc-v2":
		os.Exit(fakeDaemon(os.Args[1:]))
	case "fake-serve":
		os.Exit(fakeServe(os.Args[1]))
	}
	os.Exit(m.Run())
}

// fakeDaemon flags: --host=unix://SOCK serves dockerd's /_ping and /version on SOCK;
// --address=SOCK accepts connections on SOCK; --pidfile=F writes its pid to F, refusing
// to start (like dockerd) when F names a live process; --ignore-term; --exit-after=D;
// --spew=N writes N bytes of log lines; --child=F starts a sleeping child that inherits
// stdout and writes its pid to F. It exits 0 on SIGTERM.
func fakeDaemon(args []string) int {
	flags := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	term := make(chan os.Signal, 1)
	if _, ok := flags["--ignore-term"]; ok {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	if pf := flags["--pidfile"]; pf != "" {
		if b, err := os.ReadFile(pf); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
				fmt.Fprintf(os.Stderr, "pid file found, ensure docker is not running or delete %s\n", pf)
				return 1
			}
		}
		if err := os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if n, _ := strconv.Atoi(flags["--spew"]); n > 0 {
		line := strings.Repeat("x", 99) + "\n"
		for i := 0; i < n; i += len(line) {
			os.Stdout.WriteString(line)
		}
	}
	if cf := flags["--child"]; cf != "" {
		c := exec.Command("sleep", "30")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.WriteFile(cf, []byte(strconv.Itoa(c.Process.Pid)), 0o644)
	}
	if sock, ok := strings.CutPrefix(flags["--host"], "unix://"); ok && flags["--no-listen"] == "" {
		os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK") })
		mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"Version":"99.0-fake"}`) })
		go http.Serve(ln, mux)
	}
	if sock := flags["--address"]; sock != "" && flags["--no-listen"] == "" {
		os.Remove(sock)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	fmt.Println("fake", filepath.Base(os.Args[0]), "running")
	var exit <-chan time.Time
	if d, err := time.ParseDuration(flags["--exit-after"]); err == nil {
		exit = time.After(d)
	}
	select {
	case <-term:
		return 0
	case <-exit:
		fmt.Println("fake daemon exiting")
		return 1
	}
}

// fakeServe runs an engine of the fake daemons in dir until it is killed.
func fakeServe(dir string) int {
	e := testEngineIn(dir, slog.New(slog.NewTextHandler(os.Stderr, nil)), nil, nil)
	if err := e.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {}
}

// fakeBins links (or copies) the test binary into a new directory as the fake daemons.
func fakeBins(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Socket paths must stay short (108 bytes).
	dir, err := os.MkdirTemp("", "eng")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, name := range []string{"dockerd", "containerd", "containerd-shim-runc-v2", "fake-serve"} {
		dst := filepath.Join(dir, name)
		if os.Link(self, dst) == nil {
			continue
		}
		b, err := os.ReadFile(self)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testEngineIn is an engine of the fake daemons in dir with short timeouts.
func testEngineIn(dir string, log *slog.Logger, cdArgs, ddArgs []string) *Engine {
	return &Engine{
		Containerd:   append([]string{filepath.Join(dir, "containerd"), "--address=" + filepath.Join(dir, "cd.sock"), "--pidfile=" + filepath.Join(dir, "cd.pid")}, cdArgs...),
		Dockerd:      append([]string{filepath.Join(dir, "dockerd"), "--host=unix://" + filepath.Join(dir, "d.sock"), "--pidfile=" + filepath.Join(dir, "d.pid")}, ddArgs...),
		Socket:       filepath.Join(dir, "d.sock"),
		LogPath:      filepath.Join(dir, "engine.log"),
		Log:          log,
		readyTimeout: 10 * time.Second,
		restartDelay: 50 * time.Millisecond,
		reapTimeout:  time.Second,
	}
}

func testEngine(t *testing.T, dir string, cdArgs, ddArgs []string) *Engine {
	e := testEngineIn(dir, slog.New(slog.NewTextHandler(testWriter{t}, nil)), cdArgs, ddArgs)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitState waits for the engine to reach st and returns the message of that event.
func waitState(t *testing.T, e *Engine, st proto.EngineState, timeout time.Duration) string {
	t.Helper()
	ch, cancel := e.Subscribe()
	defer cancel()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-ch:
			if ev.Engine == st {
				return ev.Message
			}
		case <-deadline:
			t.Fatalf("engine did not reach %q within %s; it is %q", st, timeout, e.State())
		}
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	var last error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return pid
			}
		}
		last = err
	}
	t.Fatalf("no pid in %s: %v", path, last)
	return 0
}

// running reports whether pid is a live process running one of the fake binaries in dir
// (a zombie has no exe).
func running(pid int, dir string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Dir(exe) == dir
}

// killLeftover kills pid when it still runs a fake binary of dir (a test that failed).
func killLeftover(pid int, dir string) {
	if running(pid, dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// countProcs counts the live processes running dir/name.
func countProcs(dir, name string) int {
	return len(findProcs("/proc", exeMatcher(filepath.Join(dir, name)), os.Getpid()))
}

// goroutines counts the goroutines whose stack contains fn.
func goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	c := 0
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			c++
		}
	}
	return c
}

func TestEngineRunsFakeDaemons(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, nil, nil)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	if v := e.Version(); v != "99.0-fake" {
		t.Errorf("version = %q", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Stop(ctx)
	if st := e.State(); st != proto.EngineStopped {
		t.Errorf("state after Stop = %q", st)
	}
	if n := countProcs(dir, "dockerd") + countProcs(dir, "containerd"); n != 0 {
		t.Errorf("%d daemons left after Stop", n)
	}
}

// Bug 1a: the daemons die with the serve process, so a restarted serve never finds them.
func TestDaemonsDieWithServe(t *testing.T) {
	dir := fakeBins(t)
	serve := exec.Command(filepath.Join(dir, "fake-serve"), dir)
	var out bytes.Buffer
	serve.Stdout, serve.Stderr = &out, &out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	dd, cd := readPid(t, filepath.Join(dir, "d.pid")), readPid(t, filepath.Join(dir, "cd.pid"))
	t.Cleanup(func() { killLeftover(dd, dir); killLeftover(cd, dir) })
	if !running(dd, dir) || !running(cd, dir) {
		t.Fatalf("daemons not running: %s", out.String())
	}
	serve.Process.Kill()
	serve.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for (running(dd, dir) || running(cd, dir)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if running(dd, dir) || running(cd, dir) {
		t.Fatalf("daemons survived their serve process (dockerd %v, containerd %v)", running(dd, dir), running(cd, dir))
	}
}

// Bug 1a: PDEATHSIG fires when the forking thread exits; a daemon must survive the Go
// runtime ending threads (a goroutine that exits locked to its thread ends it). The
// supervisor parks in onStart so that, were it not locked to its thread, the forking
// thread would be free to run (and be ended by) the thread-ending goroutines.
func TestDaemonSurvivesThreadExits(t *testing.T) {
	dir := fakeBins(t)
	pidfile := filepath.Join(dir, "d.pid")
	s := newSupervised("dockerd", []string{filepath.Join(dir, "dockerd"), "--pidfile=" + pidfile}, io.Discard,
		slog.New(slog.NewTextHandler(testWriter{t}, nil)), 10*time.Millisecond)
	started, release := make(chan struct{}, 1), make(chan struct{})
	s.onStart = func() {
		started <- struct{}{}
		<-release
	}
	go s.run()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.stop(ctx)
	}()
	<-started
	pid := readPid(t, pidfile)
	for range 200 {
		var wg sync.WaitGroup
		for range 4 * runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
				time.Sleep(100 * time.Microsecond)
			}()
		}
		wg.Wait()
	}
	close(release)
	time.Sleep(100 * time.Millisecond)
	if !running(pid, dir) {
		t.Fatal("the daemon died with a thread of the agent")
	}
}

// Bug 2: a restarted containerd brings the engine back to running; dockerd keeps running.
func TestEngineRunningAgainAfterContainerdRestart(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, nil, nil)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	dd := readPid(t, filepath.Join(dir, "d.pid"))
	cd := readPid(t, filepath.Join(dir, "cd.pid"))
	ch, cancel := e.Subscribe()
	defer cancel()
	<-ch // the current state
	syscall.Kill(cd, syscall.SIGKILL)
	var seen []string
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-ch:
			seen = append(seen, string(ev.Engine)+" "+ev.Message)
			done = ev.Engine == proto.EngineRunning
		case <-deadline:
			t.Fatalf("engine not running again after a containerd restart; events: %q, state %q", seen, e.State())
		}
	}
	if !strings.Contains(seen[0], "containerd exited") {
		t.Errorf("first event after the crash = %q", seen[0])
	}
	if readPid(t, filepath.Join(dir, "cd.pid")) == cd {
		t.Error("containerd was not restarted")
	}
	if !running(dd, dir) {
		t.Error("dockerd was restarted too")
	}
}

// Bug 2: readiness needs containerd too, and is bounded.
func TestEngineFailsWhenContainerdNeverAnswers(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, []string{"--no-listen=1"}, nil)
	e.readyTimeout = time.Second
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	msg := waitState(t, e, proto.EngineFailed, 10*time.Second)
	if !strings.Contains(msg, "containerd") {
		t.Errorf("failure message %q does not name containerd", msg)
	}
	if st := e.State(); st != proto.EngineFailed {
		t.Errorf("state = %q after failure", st)
	}
}

// Bug 2 and 4: restarts never start a second readiness loop, and Stop ends every
// goroutine of the engine.
func TestOneReadyLoopAndStopEndsIt(t *testing.T) {
	dir := fakeBins(t)
	// dockerd exits every 100 ms and containerd never listens: the engine restarts dockerd
	// again and again and never becomes ready.
	e := testEngine(t, dir, []string{"--no-listen=1"}, []string{"--exit-after=100ms"})
	e.readyTimeout = time.Minute
	e.restartDelay = 10 * time.Millisecond
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	maxLoops := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		maxLoops = max(maxLoops, goroutines("guestagent.(*Engine).waitReady"))
	}
	if maxLoops > 1 {
		t.Errorf("%d readiness loops ran at once", maxLoops)
	}
	done := make(chan struct{})
	go func() {
		e.Stop(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hung")
	}
	time.Sleep(100 * time.Millisecond)
	for _, fn := range []string{"guestagent.(*Engine).waitReady", "guestagent.(*Engine).monitor", "guestagent.(*supervised).run"} {
		if n := goroutines(fn); n != 0 {
			t.Errorf("%d goroutines in %s after Stop", n, fn)
		}
	}
	if st := e.State(); st != proto.EngineStopped {
		t.Errorf("state after Stop = %q", st)
	}
}

// Bug 4: Stop returns when a daemon never started.
func TestStopWhenDaemonNeverStarted(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, nil, nil)
	e.Dockerd[0] = filepath.Join(dir, "no-such-dockerd")
	e.Containerd[0] = filepath.Join(dir, "no-such-containerd")
	e.restartDelay = time.Minute // Stop ends the restart backoff
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		e.Stop(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Stop hung")
	}
	if n := goroutines("guestagent.(*supervised).run"); n != 0 {
		t.Errorf("%d supervisors left", n)
	}
}

// Bug 3/4: a daemon's descendant that keeps the output pipe open neither keeps the
// daemon's Wait (and so Stop) waiting nor the copying goroutine alive.
func TestStopWithOutputHeldByDescendant(t *testing.T) {
	dir := fakeBins(t)
	childPid := filepath.Join(dir, "child.pid")
	e := testEngine(t, dir, nil, []string{"--child=" + childPid})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	child := readPid(t, childPid)
	t.Cleanup(func() { syscall.Kill(child, syscall.SIGKILL) })
	done := make(chan struct{})
	go func() {
		e.Stop(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(pipeDrain + 5*time.Second):
		t.Fatal("Stop hung on the daemon's output pipe")
	}
	time.Sleep(100 * time.Millisecond)
	if n := goroutines("os/exec.(*Cmd).writerDescriptor"); n != 0 {
		t.Errorf("%d output copying goroutines left", n)
	}
}

// Bug 3: the daemons' output goes to a bounded, rotated engine.log.
func TestEngineLogIsBounded(t *testing.T) {
	dir := fakeBins(t)
	const max = 64 << 10
	e := testEngine(t, dir, []string{"--spew=300000"}, []string{"--spew=300000"})
	e.logMax = max
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Stop(ctx)
	for _, p := range []string{e.LogPath, e.LogPath + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// exec copies in chunks of 32 KiB at most
		if st.Size() > max+32<<10 {
			t.Errorf("%s is %d bytes, cap %d", p, st.Size(), max)
		}
	}
	b, _ := os.ReadFile(e.LogPath)
	if !strings.Contains(string(b), "running") {
		t.Errorf("the newest log lacks the daemons' last lines: %q", b)
	}
}

func TestRotatingWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "engine.log")
	if err := os.WriteFile(path, []byte("earlier serve\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const max = 1000
	w, err := openRotatingWriter(path, max)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("y", 49) + "\n")
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if n, err := w.Write(line); n != len(line) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
	w.Write([]byte("last\n"))
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > max || len(old) > max {
		t.Errorf("sizes %d and %d, cap %d", len(cur), len(old), max)
	}
	if !strings.HasSuffix(string(cur), "last\n") {
		t.Errorf("newest file does not end with the last write")
	}
	for _, b := range [][]byte{cur, old} {
		// whole writes only, never interleaved
		for l := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
			if l != string(line[:49]) && l != "last" {
				t.Fatalf("torn line %q", l)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Write(line); n != len(line) || err != nil {
		t.Errorf("Write after Close = %d, %v", n, err)
	}
	// A write never fails, even when the file cannot be opened.
	w2 := &rotatingWriter{path: filepath.Join(t.TempDir(), "missing", "engine.log"), max: max}
	if n, err := w2.Write(line); n != len(line) || err != nil {
		t.Errorf("Write to an unopenable file = %d, %v", n, err)
	}
}

func TestArgValue(t *testing.T) {
	argv := []string{"/usr/sbin/dockerd", "--host=unix:///run/docker.sock", "-p", "/run/x.pid", "--address", "/a.sock"}
	for _, c := range []struct{ long, short, want string }{
		{"--host", "-H", "unix:///run/docker.sock"},
		{"--pidfile", "-p", "/run/x.pid"},
		{"--address", "-a", "/a.sock"},
		{"--data-root", "", ""},
	} {
		if got := argValue(argv, c.long, c.short); got != c.want {
			t.Errorf("argValue(%s) = %q, want %q", c.long, got, c.want)
		}
	}
	if got := DefaultEngine(slog.Default(), "").containerdSocket(); got != "/run/containerd/containerd.sock" {
		t.Errorf("containerd socket = %q", got)
	}
}
