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
	"slices"
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
// --spew=N writes N bytes of log lines; --tick=D writes a log line every D; --child=F starts a sleeping child that inherits
// stdout and writes its pid to F. It exits 0 on SIGTERM, after a last log line.
func fakeDaemon(args []string) int {
	flags := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		flags[k] = v
	}
	if _, ok := flags["--version"]; ok { // as containerd prints it
		fmt.Println("containerd github.com/containerd/containerd v1.7.99-fake 0123abcd")
		return 0
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
	if d, err := time.ParseDuration(flags["--tick"]); err == nil {
		go func() {
			for range time.Tick(d) {
				fmt.Println("fake", filepath.Base(os.Args[0]), "tick")
			}
		}()
	}
	select {
	case <-term:
		fmt.Println("fake", filepath.Base(os.Args[0]), "stopping")
		return 0
	case <-exit:
		fmt.Println("fake daemon exiting")
		return 1
	}
}

// fakeServe runs an engine of the fake daemons in dir until it is killed. The daemons
// log all the time: were their output a pipe to this process, they would die of SIGPIPE
// once it is gone.
func fakeServe(dir string) int {
	tick := []string{"--tick=50ms"}
	e := testEngineIn(dir, slog.New(slog.NewTextHandler(os.Stderr, nil)), tick, tick)
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
		logCheck:     50 * time.Millisecond,
		readyTimeout: 10 * time.Second,
		restartDelay: 50 * time.Millisecond,
		reapTimeout:  time.Second,
		adoptTimeout: time.Second,
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
// countProcs counts the fake daemons named name, not the short `name --version` runs the
// engine makes to learn a component's version.
func countProcs(dir, name string) int {
	n := 0
	for _, pid := range findProcs("/proc", exeMatcher(filepath.Join(dir, name)), os.Getpid()) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !bytes.Contains(b, []byte("\x00--version")) {
			n++
		}
	}
	return n
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
		// Only the goroutine's own frames: a goroutine that fn started names fn in its
		// "created by" line, which is not fn running.
		if i := bytes.Index(g, []byte("\ncreated by ")); i >= 0 {
			g = g[:i]
		}
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
	// The fake dockerd reports no components: containerd's comes from `containerd --version`.
	if v := e.Versions().Containerd; v != "1.7.99-fake" {
		t.Errorf("containerd version = %q, want the one `containerd --version` printed", v)
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

// startFakeServe starts a serve process running an engine of the fake daemons in dir
// and waits for its engine to answer; it returns the serve process and the daemons' pids.
func startFakeServe(t *testing.T, dir string) (serve *exec.Cmd, dockerd, containerd int) {
	t.Helper()
	out, err := os.Create(filepath.Join(dir, "serve.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	serve = exec.Command(filepath.Join(dir, "fake-serve"), dir)
	serve.Stdout, serve.Stderr = out, out
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serve.Process.Kill(); serve.Wait() })
	dockerd, containerd = readPid(t, filepath.Join(dir, "d.pid")), readPid(t, filepath.Join(dir, "cd.pid"))
	t.Cleanup(func() { killLeftover(dockerd, dir); killLeftover(containerd, dir) })
	probe := testEngineIn(dir, slog.New(slog.DiscardHandler), nil, nil)
	c := probe.client()
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); probe.probe(context.Background(), c) != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "serve.out"))
			t.Fatalf("the fake serve's engine did not answer: %s", b)
		}
	}
	return serve, dockerd, containerd
}

// ppid returns the parent of pid.
func ppid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	p, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatalf("stat of %d: %q", pid, b)
	}
	return p
}

// waitNewPid waits for the pid file to name a running process other than old.
func waitNewPid(t *testing.T, path, dir string, old int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != old && running(pid, dir) {
				return pid
			}
		}
	}
	t.Fatalf("%s names no new running process", path)
	return 0
}

// The daemons outlive their serve process, and a restarted serve process adopts them:
// no daemon is started, the engine is running at once, and an adopted daemon that dies
// is restarted as a child of the new serve process.
func TestRestartedServeAdoptsDaemons(t *testing.T) {
	dir := fakeBins(t)
	serve, dd, cd := startFakeServe(t, dir)
	// The serve process dies while its engine naps (EngineNap): the new one continues it.
	syscall.Kill(dd, syscall.SIGSTOP)
	syscall.Kill(cd, syscall.SIGSTOP)
	serve.Process.Kill()
	serve.Wait()
	time.Sleep(300 * time.Millisecond)
	if !running(dd, dir) || !running(cd, dir) {
		t.Fatalf("daemons died with their serve process (dockerd %v, containerd %v)", running(dd, dir), running(cd, dir))
	}
	waitProcState(t, dd, "T")

	e := testEngine(t, dir, nil, nil)
	start := time.Now()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 15*time.Second) // a bound, not a speed check: adopting waits for answers, slow under -race on a loaded machine
	t.Logf("running %s after Start", time.Since(start).Round(time.Millisecond))
	if !running(dd, dir) || !running(cd, dir) {
		t.Fatalf("the adopted daemons were stopped (dockerd %v, containerd %v)", running(dd, dir), running(cd, dir))
	}
	if d, c := countProcs(dir, "dockerd"), countProcs(dir, "containerd"); d != 1 || c != 1 {
		for _, pid := range findProcs("/proc", exeMatcher(filepath.Join(dir, "containerd")), os.Getpid()) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			t.Logf("containerd %d (parent %d): %q", pid, ppid(t, pid), b)
		}
		t.Fatalf("%d dockerd and %d containerd run, want the adopted one each", d, c)
	}
	if got := readPid(t, filepath.Join(dir, "d.pid")); got != dd {
		t.Errorf("dockerd's pid file names %d, want the adopted %d", got, dd)
	}
	if procState(t, dd) == "T" || procState(t, cd) == "T" {
		t.Errorf("an adopted daemon is still stopped (dockerd %s, containerd %s)", procState(t, dd), procState(t, cd))
	}

	// The adopted dockerd dies: the engine notices and starts one of its own.
	syscall.Kill(dd, syscall.SIGKILL)
	nd := waitNewPid(t, filepath.Join(dir, "d.pid"), dir, dd)
	if p := ppid(t, nd); p != os.Getpid() {
		t.Errorf("the restarted dockerd's parent is %d, want this process (%d)", p, os.Getpid())
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	if d, c := countProcs(dir, "dockerd"), countProcs(dir, "containerd"); d != 1 || c != 1 {
		t.Errorf("%d dockerd and %d containerd run, want one each", d, c)
	}
	if !running(cd, dir) {
		t.Error("the adopted containerd was restarted too")
	}
}

// leftover is a daemon of an "earlier serve process" started by a test; done is closed
// when it has exited, with its order among the leftovers of the test in order.
type leftover struct {
	cmd   *exec.Cmd
	done  chan struct{}
	order int
}

func startLeftovers(t *testing.T, dir string) func(name string, args ...string) *leftover {
	var mu sync.Mutex
	exits := 0
	return func(name string, args ...string) *leftover {
		t.Helper()
		cmd := exec.Command(filepath.Join(dir, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p := &leftover{cmd: cmd, done: make(chan struct{})}
		go func() {
			cmd.Wait()
			mu.Lock()
			exits++
			p.order = exits
			mu.Unlock()
			close(p.done)
		}()
		t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
		return p
	}
}

func (p *leftover) exited(t *testing.T, within time.Duration) bool {
	t.Helper()
	select {
	case <-p.done:
		return true
	case <-time.After(within):
		return false
	}
}

// Two leftover dockerds: neither is adopted, both are stopped and one fresh one starts.
func TestStartReapsSeveralDockerds(t *testing.T) {
	dir := fakeBins(t)
	start := startLeftovers(t, dir)
	a := start("dockerd", "--host=unix://"+filepath.Join(dir, "d.sock"), "--pidfile="+filepath.Join(dir, "d.pid"))
	b := start("dockerd", "--host=unix://"+filepath.Join(dir, "d2.sock"), "--pidfile="+filepath.Join(dir, "d2.pid"))
	readPid(t, filepath.Join(dir, "d.pid"))
	readPid(t, filepath.Join(dir, "d2.pid"))

	e := testEngine(t, dir, nil, nil)
	e.reapTimeout = 3 * time.Second // the race detector slows the fakes' exit by about 1 s
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*leftover{a, b} {
		if !p.exited(t, 5*time.Second) {
			t.Fatalf("leftover dockerd %d still runs", p.cmd.Process.Pid)
		}
		if !p.cmd.ProcessState.Success() {
			t.Errorf("leftover dockerd ended with %v, want a SIGTERM exit", p.cmd.ProcessState)
		}
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	nd := readPid(t, filepath.Join(dir, "d.pid"))
	if nd == a.cmd.Process.Pid || ppid(t, nd) != os.Getpid() {
		t.Errorf("dockerd %d (parent %d) is not a fresh child", nd, ppid(t, nd))
	}
	if d := countProcs(dir, "dockerd"); d != 1 {
		t.Errorf("%d dockerd run, want one", d)
	}
}

// A lone leftover dockerd that does not answer is stopped (after the adopt timeout) and
// a fresh one started; a lone leftover containerd that answers is adopted meanwhile.
func TestStartReapsDeafDockerdAdoptsContainerd(t *testing.T) {
	dir := fakeBins(t)
	start := startLeftovers(t, dir)
	deaf := start("dockerd", "--host=unix://"+filepath.Join(dir, "d.sock"), "--pidfile="+filepath.Join(dir, "d.pid"), "--no-listen=1")
	cd := start("containerd", "--address="+filepath.Join(dir, "cd.sock"), "--pidfile="+filepath.Join(dir, "cd.pid"))
	readPid(t, filepath.Join(dir, "d.pid"))
	readPid(t, filepath.Join(dir, "cd.pid"))

	e := testEngine(t, dir, nil, nil)
	begin := time.Now()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	if !deaf.exited(t, 5*time.Second) {
		t.Fatal("the leftover dockerd that does not answer still runs")
	}
	if d := time.Since(begin); d < e.adoptTimeout {
		t.Errorf("it was stopped after %s, before the adopt timeout", d)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	if nd := readPid(t, filepath.Join(dir, "d.pid")); ppid(t, nd) != os.Getpid() {
		t.Errorf("dockerd %d is not a child of this process", nd)
	}
	if !running(cd.cmd.Process.Pid, dir) {
		t.Error("the leftover containerd that answers was stopped, not adopted")
	}
	if c := countProcs(dir, "containerd"); c != 1 {
		t.Errorf("%d containerd run, want the adopted one", c)
	}
}

// Stop stops adopted daemons, dockerd first, and kills one deaf to SIGTERM when its
// context ends (Stop's context bounds both daemons, so the deaf one is the last).
func TestStopStopsAdoptedDaemons(t *testing.T) {
	dir := fakeBins(t)
	start := startLeftovers(t, dir)
	dd := start("dockerd", "--host=unix://"+filepath.Join(dir, "d.sock"), "--pidfile="+filepath.Join(dir, "d.pid"))
	cd := start("containerd", "--address="+filepath.Join(dir, "cd.sock"), "--pidfile="+filepath.Join(dir, "cd.pid"), "--ignore-term=1")
	readPid(t, filepath.Join(dir, "d.pid"))
	readPid(t, filepath.Join(dir, "cd.pid"))

	e := testEngine(t, dir, nil, nil)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 5*time.Second)
	if !running(dd.cmd.Process.Pid, dir) || !running(cd.cmd.Process.Pid, dir) {
		t.Fatal("a leftover was not adopted")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	e.Stop(ctx)
	if !dd.exited(t, time.Second) || !cd.exited(t, time.Second) {
		t.Fatal("Stop left adopted daemons running")
	}
	if !dd.cmd.ProcessState.Success() {
		t.Errorf("dockerd ended with %v, want a SIGTERM exit", dd.cmd.ProcessState)
	}
	if ws := cd.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the deaf containerd ended with %v, want SIGKILL", cd.cmd.ProcessState)
	}
	if dd.order != 1 || cd.order != 2 {
		t.Errorf("exit order dockerd %d, containerd %d; want dockerd first", dd.order, cd.order)
	}
	if n := countProcs(dir, "dockerd") + countProcs(dir, "containerd"); n != 0 {
		t.Errorf("%d daemons left after Stop", n)
	}
	if st := e.State(); st != proto.EngineStopped {
		t.Errorf("state after Stop = %q", st)
	}
}

// A daemon survives the Go runtime ending threads (a goroutine that exits locked to its
// thread ends it): were PDEATHSIG back, it would fire when the forking thread exits. The
// supervisor parks in onStart so that the forking thread is free to run (and be ended
// by) the thread-ending goroutines.
func TestDaemonSurvivesThreadExits(t *testing.T) {
	dir := fakeBins(t)
	pidfile := filepath.Join(dir, "d.pid")
	s := newSupervised("dockerd", []string{filepath.Join(dir, "dockerd"), "--pidfile=" + pidfile}, nil,
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
	// The readiness loop may see the socket gone (a bare "starting") before the supervisor
	// reports the exit; the reason must come before the engine is running again.
	if !slices.ContainsFunc(seen, func(ev string) bool { return strings.Contains(ev, "containerd exited") }) {
		t.Errorf("no event says containerd exited before running again: %q", seen)
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
	e.readyTimeout = 3 * time.Second // dockerd must answer within it, also under -race
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
	// The counts are process-wide: an engine another test of the package left running
	// (its loops end in their own time) is not this one's.
	fns := []string{"guestagent.(*Engine).waitReady", "guestagent.(*Engine).monitor", "guestagent.(*supervised).run", "guestagent.capLoop"}
	base := map[string]int{}
	for _, fn := range fns {
		base[fn] = goroutines(fn)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	maxLoops := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		maxLoops = max(maxLoops, goroutines(fns[0])-base[fns[0]])
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
	// The loops end as Stop returns; a loaded machine may take a moment to run their last
	// lines, so the count is polled (a loop that never ends still fails).
	for _, fn := range fns {
		n := goroutines(fn)
		for deadline := time.Now().Add(5 * time.Second); n > base[fn] && time.Now().Before(deadline); n = goroutines(fn) {
			time.Sleep(20 * time.Millisecond)
		}
		if n > base[fn] {
			t.Errorf("%d goroutines in %s after Stop (%d before Start)", n, fn, base[fn])
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

// Bug 3/4: a daemon's descendant that keeps its output open (the log file now; a pipe
// were it back) neither keeps the daemon's Wait (and so Stop) waiting nor a copying
// goroutine alive.
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
	case <-time.After(7 * time.Second):
		t.Fatal("Stop hung on the daemon's output")
	}
	time.Sleep(100 * time.Millisecond)
	if n := goroutines("os/exec.(*Cmd).writerDescriptor"); n != 0 {
		t.Errorf("%d output copying goroutines left", n)
	}
}

// Bug 3: the daemons write into engine.log (a file, no pipe through the serve process),
// which is cut by copy-truncate: after a burst it and engine.log.1 are within the cap,
// and the daemons (O_APPEND) go on at its new end, leaving no hole.
func TestEngineLogIsBounded(t *testing.T) {
	dir := fakeBins(t)
	const max = 64 << 10
	e := testEngine(t, dir, []string{"--spew=300000"}, []string{"--spew=300000"})
	e.logMax = max
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return st.Size()
	}
	for deadline := time.Now().Add(5 * time.Second); size(e.LogPath) > max || size(e.LogPath+".1") < 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("engine.log is %d bytes, engine.log.1 %d, cap %d", size(e.LogPath), size(e.LogPath+".1"), max)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Stop(ctx)
	for _, p := range []string{e.LogPath, e.LogPath + ".1"} {
		if n := size(p); n > max {
			t.Errorf("%s is %d bytes, cap %d", p, n, max)
		}
	}
	b, _ := os.ReadFile(e.LogPath)
	if bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("engine.log has a hole: a daemon wrote at its old offset after the truncation")
	}
	for _, d := range []string{"dockerd", "containerd"} {
		if !strings.Contains(string(b), "fake "+d+" stopping") {
			t.Errorf("the newest log lacks %s's last line: %q", d, b)
		}
	}
	old, _ := os.ReadFile(e.LogPath + ".1")
	if !strings.HasPrefix(string(old), strings.Repeat("x", 99)+"\n") {
		t.Errorf("engine.log.1 does not start with a whole line: %.120q", old)
	}
}

func TestCapLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "engine.log")
	if cut, err := capLog(path, 100); cut || err != nil {
		t.Errorf("capLog of a missing log = %v, %v", cut, err)
	}
	w, err := openEngineLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const max = 1000
	line := strings.Repeat("y", 49) + "\n"
	w.WriteString(strings.Repeat(line, 10))
	if cut, err := capLog(path, max); cut || err != nil {
		t.Errorf("capLog under the cap = %v, %v", cut, err)
	}
	os.WriteFile(path+".1", []byte("older\n"), 0o644)
	w.WriteString(strings.Repeat(line, 100))
	w.WriteString("last\n")
	if cut, err := capLog(path, max); !cut || err != nil {
		t.Fatalf("capLog over the cap = %v, %v", cut, err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(old) > max || !strings.HasSuffix(string(old), line+"last\n") || !strings.HasPrefix(string(old), line) {
		t.Errorf("engine.log.1 is not the newest whole lines within the cap (%d bytes): %q", len(old), old)
	}
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Errorf("engine.log is %d bytes after the cut", st.Size())
	}
	// The writer goes on at the new end.
	w.WriteString("after\n")
	if b, _ := os.ReadFile(path); string(b) != "after\n" {
		t.Errorf("engine.log after the cut = %.60q (%d bytes)", b, len(b))
	}
	if _, err := os.Stat(path + ".1.tmp"); !os.IsNotExist(err) {
		t.Errorf("the temporary copy is left: %v", err)
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

// A daemon that crashes after a good run is restarted at once, whatever the backoff; one
// that dies again right away waits out the backoff.
func TestDaemonRestartedAtOnceAfterGoodRun(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, nil, nil)
	e.restartDelay = time.Minute
	e.stableRun = 300 * time.Millisecond
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	pidfile := filepath.Join(dir, "d.pid")
	dd := readPid(t, pidfile)
	time.Sleep(400 * time.Millisecond) // a good run
	killed := time.Now()
	syscall.Kill(dd, syscall.SIGKILL)
	next := waitNewPid(t, pidfile, dir, dd)
	if took := time.Since(killed); took > 5*time.Second {
		t.Fatalf("dockerd restarted %s after a crash that followed a good run", took)
	}
	syscall.Kill(next, syscall.SIGKILL) // a short run: the backoff (a minute) applies
	time.Sleep(time.Second)
	if n := countProcs(dir, "dockerd"); n != 0 {
		t.Errorf("%d dockerd running 1 s after a crash that followed a short run; want the backoff", n)
	}
}

// procState is the state letter of pid in /proc/PID/stat ("T" when stopped).
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return f[0]
}

// waitProcState waits up to 5 s for pid to be in state want (signals arrive asynchronously).
func waitProcState(t *testing.T, pid int, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got := procState(t, pid)
		if (got == "T") == (want == "T") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d in state %s, want %s", pid, got, want)
		}
	}
}

// TestEngineStopEndsNappingDaemons: signalDaemons stops and continues both real daemon
// processes, and Stop ends napping ones with SIGTERM well before its deadline (a stopped
// process acts on SIGTERM only once continued).
func TestEngineStopEndsNappingDaemons(t *testing.T) {
	dir := fakeBins(t)
	e := testEngine(t, dir, nil, nil)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, proto.EngineRunning, 10*time.Second)
	dd, cd := readPid(t, filepath.Join(dir, "d.pid")), readPid(t, filepath.Join(dir, "cd.pid"))
	e.signalDaemons(syscall.SIGSTOP)
	waitProcState(t, dd, "T")
	waitProcState(t, cd, "T")
	e.signalDaemons(syscall.SIGCONT)
	waitProcState(t, dd, "S")
	waitProcState(t, cd, "S")
	e.signalDaemons(syscall.SIGSTOP)
	waitProcState(t, dd, "T")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t0 := time.Now()
	e.Stop(ctx)
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("Stop of napping daemons took %s: they were not continued", d)
	}
	if n := countProcs(dir, "dockerd") + countProcs(dir, "containerd"); n != 0 {
		t.Errorf("%d daemons left after Stop", n)
	}
}
