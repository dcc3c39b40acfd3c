//go:build linux

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/store"
	"github.com/berth-dev/berth/vm"
)

// These tests run the whole host daemon (Run: control socket, boot, docker socket, port
// forwarding, stop) in process. The VM is a fake vm.Driver whose agent channel is served by
// the real guestagent.Server, whose engine is the real Engine supervising stand-in daemons
// (sleep) in front of a fake engine API on a unix socket.

// fakeEngineAPI answers the engine API calls the agent and the tests make.
type fakeEngineAPI struct {
	sock   string
	ports  atomic.Value // []publishedPort: what /containers/json lists
	events chan struct{}
}

type publishedPort struct {
	IP          string
	PrivatePort int
	PublicPort  int
	Type        string
}

func startFakeEngineAPI(t *testing.T, dir string) *fakeEngineAPI {
	f := &fakeEngineAPI{sock: filepath.Join(dir, "docker.sock"), events: make(chan struct{}, 16)}
	f.ports.Store([]publishedPort{})
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Version":"26.1.5","ApiVersion":"1.45"}`)
	})
	mux.HandleFunc("/containers/json", func(w http.ResponseWriter, r *http.Request) {
		list := []map[string]any{}
		if ps := f.ports.Load().([]publishedPort); len(ps) > 0 {
			list = append(list, map[string]any{"Names": []string{"/web"}, "Ports": ps})
		}
		json.NewEncoder(w).Encode(list)
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-f.events:
				io.WriteString(w, `{"Action":"start"}`+"\n")
				w.(http.Flusher).Flush()
			}
		}
	})
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f
}

// publish makes the fake engine list one container publishing ports, and says so.
func (f *fakeEngineAPI) publish(ps ...publishedPort) {
	if ps == nil {
		ps = []publishedPort{}
	}
	f.ports.Store(ps)
	f.events <- struct{}{}
}

// runVM is a fake VM: the agent server answers on every DialAgent; power-off (the agent's
// shutdown, or a forced stop) and crash end it through the exit channel.
type runVM struct {
	t      *testing.T
	srv    *guestagent.Server
	ctx    context.Context
	cancel context.CancelFunc
	exit   chan error
	runDir string // the run's RuntimeDir, where a driver keeps its sockets
	once   sync.Once
	wg     sync.WaitGroup
}

// Start leaves a socket file in the run's directory, as QEMU's QMP and agent ports do.
func (v *runVM) Start(ctx context.Context) (<-chan error, error) {
	return v.exit, os.WriteFile(filepath.Join(v.runDir, "qmp.sock"), nil, 0o600)
}

func (v *runVM) Stop(ctx context.Context, force bool) error {
	if force {
		v.end(errors.New("killed"))
	}
	return nil
}

func (v *runVM) DialAgent(ctx context.Context) (net.Conn, error) {
	host, guest := unixPair(v.t)
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		v.srv.ServeConn(v.ctx, guest)
	}()
	return host, nil
}

// end is the VM going away with err (nil: a clean power-off).
func (v *runVM) end(err error) {
	v.once.Do(func() {
		v.cancel()
		v.exit <- err
	})
}

type runEnv struct {
	inst   *store.Instance
	client *api.Client
	vm     *runVM
	engine *fakeEngineAPI
	done   chan error // Run's result
}

// startRun creates an instance and runs its daemon in process until it is Running.
func startRun(t *testing.T) *runEnv {
	dir := t.TempDir()
	t.Setenv("BERTH_HOME", filepath.Join(dir, "home"))
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "docker"))
	imgs := filepath.Join(dir, "images")
	os.MkdirAll(filepath.Join(imgs, runtime.GOARCH), 0o755)
	for _, f := range image.Required {
		os.WriteFile(filepath.Join(imgs, runtime.GOARCH, f), []byte("x"), 0o644)
	}
	cfg := store.DefaultConfig()
	cfg.Shares = nil
	cfg.Images = imgs
	cfg.Disk = 4
	inst, err := store.Create("t", cfg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	}

	eng := startFakeEngineAPI(t, dir)
	cd := filepath.Join(dir, "containerd.sock")
	cdl, err := net.Listen("unix", cd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cdl.Close() })
	go func() {
		for {
			c, err := cdl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// Stand-in daemons: copies of sleep(1) of their own, since the engine finds (adopts,
	// reaps) its daemons by executable path and must never touch another sleep.
	bins := map[string]string{}
	for _, name := range []string{"dockerd", "containerd"} {
		b, err := os.ReadFile("/bin/sleep")
		if err != nil {
			t.Skip("no /bin/sleep to stand in for the engine's daemons")
		}
		bins[name] = filepath.Join(dir, name)
		if err := os.WriteFile(bins[name], b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	engine := &guestagent.Engine{
		Containerd:       []string{bins["containerd"], "3600"},
		Dockerd:          []string{bins["dockerd"], "3600"},
		Socket:           eng.sock,
		ContainerdSocket: cd,
		LogPath:          filepath.Join(dir, "engine.log"),
		Log:              log,
	}
	vctx, vcancel := context.WithCancel(context.Background())
	v := &runVM{t: t, ctx: vctx, cancel: vcancel, exit: make(chan error, 1)}
	watcher := &guestagent.PortWatcher{DockerSocket: eng.sock, Listeners: guestagent.ListenersNone, Log: log}
	v.srv = guestagent.NewServer(guestagent.ServeOptions{
		DockerSocket: eng.sock, Engine: engine, Ports: watcher,
		PowerOff: func() { v.end(nil) },
	}, nil, log)
	if err := engine.Start(); err != nil {
		t.Fatal(err)
	}
	v.wg.Add(1)
	go func() { defer v.wg.Done(); watcher.Run(vctx) }()
	t.Cleanup(func() {
		v.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		engine.Stop(ctx)
		v.wg.Wait()
	})

	saved := chooseDriver
	chooseDriver = func(vm.Config) (vm.Registration, error) {
		return vm.Registration{Name: "fake", Caps: vm.Caps{Network: vm.NetworkOwn, ShareDevice: func(vm.Share) string { return vm.Share9P }},
			New: func(cfg vm.Config, _ *slog.Logger) (vm.Driver, error) { v.runDir = cfg.RuntimeDir; return v, nil }}, nil
	}
	t.Cleanup(func() { chooseDriver = saved })

	e := &runEnv{inst: inst, client: api.NewClient(inst.Path(store.ControlSock)), vm: v, engine: eng, done: make(chan error, 1)}
	go func() { e.done <- Run(context.Background(), inst, log) }()
	e.waitState(t, api.StateRunning)
	return e
}

func (e *runEnv) waitState(t *testing.T, want string) api.Status {
	t.Helper()
	var st api.Status
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-e.done:
			t.Fatalf("the daemon ended (%v) before reaching %s", err, want)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err = e.client.Status(ctx)
		cancel()
		if err == nil && st.State == want {
			return st
		}
	}
	t.Fatalf("state %q (err %v), want %q", st.State, err, want)
	return st
}

// waitRun waits for Run to return and checks that no goroutine of the daemon is left.
func (e *runEnv) waitRun(t *testing.T) error {
	t.Helper()
	select {
	case err := <-e.done:
		checkNoDaemonGoroutines(t)
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not return")
		return nil
	}
}

// checkNoDaemonGoroutines fails when a goroutine running code of this package (other than
// the tests) outlives the run.
func checkNoDaemonGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		left = left[:0]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "berth/host/daemon.") && !strings.Contains(g, "berth/host/daemon.Test") &&
				!strings.Contains(g, "berth/host/daemon.startRun") && !strings.Contains(g, "_test.go") {
				left = append(left, g)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines of the daemon outlived its run:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRunStop: boot to Running, a docker request through the forwarded socket with the
// client's write side closed first, ports following the engine, then a stop that ends
// every goroutine of the run.
func TestRunStop(t *testing.T) {
	e := startRun(t)

	// Half-close: the request is sent and the write side shut; the answer still arrives.
	c, err := net.Dial("unix", e.inst.Path(store.DockerSock))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
	c.(*net.UnixConn).CloseWrite()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	c.Close()
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.0 200") || !strings.HasSuffix(string(b), "OK") {
		t.Fatalf("docker /_ping after half-close: %q, %v", b, err)
	}

	// A port appears with its container and goes away with it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	e.engine.publish(publishedPort{IP: "0.0.0.0", PrivatePort: 80, PublicPort: port, Type: "tcp"})
	waitPort(t, e, port, true)
	if c, err := net.DialTimeout("tcp", fmt.Sprint("127.0.0.1:", port), 2*time.Second); err != nil {
		t.Errorf("forwarded port %d: %v", port, err)
	} else {
		c.Close()
	}
	e.engine.publish()
	waitPort(t, e, port, false)
	if c, err := net.DialTimeout("tcp", fmt.Sprint("127.0.0.1:", port), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still listens after its container went away", port)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.client.Stop(ctx, false); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := e.waitRun(t); err != nil {
		t.Errorf("Run after a stop: %v", err)
	}
	if st := e.inst.ReadState(); st.State != api.StateStopped {
		t.Errorf("state file says %q after a stop", st.State)
	}
	for _, p := range []string{store.DockerSock, store.ControlSock} {
		if _, err := os.Stat(e.inst.Path(p)); err == nil {
			t.Errorf("%s left behind", p)
		}
	}
	if left, _ := os.ReadDir(e.inst.Path(store.RuntimeDir)); len(left) > 0 {
		t.Errorf("the run's sockets are left in %s: %v", store.RuntimeDir, left)
	}
}

// TestRunVMCrash: the VM dying while Running ends the run in Error, with the sockets and
// goroutines released.
func TestRunVMCrash(t *testing.T) {
	e := startRun(t)
	e.vm.end(errors.New("qemu exited: signal: killed"))
	err := e.waitRun(t)
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Run after a crash: %v", err)
	}
	if st := e.inst.ReadState(); st.State != api.StateError {
		t.Errorf("state file says %q after a crash", st.State)
	}
	if c, err := net.Dial("unix", e.inst.Path(store.DockerSock)); err == nil {
		c.Close()
		t.Error("the docker socket still answers after the VM died")
	}
}

func waitPort(t *testing.T, e *runEnv, port int, want bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		list, err := e.client.Ports(ctx)
		cancel()
		found := false
		for _, p := range list {
			if p.HostPort == port && p.State == "active" {
				found = true
			}
		}
		if err == nil && found == want {
			return
		}
	}
	t.Fatalf("port %d forwarded: want %v", port, want)
}
