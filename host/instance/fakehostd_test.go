//go:build !windows

package instance

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// The tests run the test binary itself as the host daemon: with BERTH_FAKE_HOSTD=NAME it
// behaves like `berth hostd NAME` (the instance lock, the control socket, the boot phases,
// stop during boot and after) without a VM. Knobs:
//   - BERTH_FAKE_SPAWNS: a file that gets one line per spawned daemon, before its lock;
//   - BERTH_FAKE_PHASE: how long each boot phase takes (default 100ms);
//   - BERTH_FAKE_SOCK_DELAY: how long the daemon holds its lock before binding its socket;
//   - BERTH_FAKE_EXIT_DELAY: how long it still holds its lock and answers (state Stopped)
//     after it stopped, as a real one releasing what it held.
func TestMain(m *testing.M) {
	if name := os.Getenv("BERTH_FAKE_HOSTD"); name != "" {
		os.Exit(fakeHostd(name))
	}
	os.Exit(m.Run())
}

// useFakeHostd makes Start spawn the fake daemon.
func useFakeHostd(t *testing.T, env ...string) {
	old := hostdCommand
	hostdCommand = func(name string) (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), "BERTH_FAKE_HOSTD="+name), env...)
		return cmd, nil
	}
	t.Cleanup(func() { hostdCommand = old })
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}

type fakeDaemon struct {
	inst *store.Instance
	mu   sync.Mutex
	cond *sync.Cond
	hist []api.Event
	st   api.Status
	stop chan struct{}
	once sync.Once
	done chan struct{}
}

func (d *fakeDaemon) logf(format string, args ...any) {
	fmt.Printf("time=%s pid=%d msg=%q\n", time.Now().Format(time.RFC3339Nano), os.Getpid(), fmt.Sprintf(format, args...))
}

func (d *fakeDaemon) publish(ev api.Event) {
	ev.Time = time.Now()
	d.mu.Lock()
	d.st.State, d.st.Phase = ev.State, ev.Phase
	d.hist = append(d.hist, ev)
	d.cond.Broadcast()
	d.mu.Unlock()
	d.logf("event state=%s phase=%s done=%v", ev.State, ev.Phase, ev.Done)
}

func (d *fakeDaemon) stopped() bool {
	select {
	case <-d.stop:
		return true
	default:
		return false
	}
}

func fakeHostd(name string) int {
	inst, err := store.Open(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if p := os.Getenv("BERTH_FAKE_SPAWNS"); p != "" {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
		}
	}
	lock, err := inst.TryLock()
	if err != nil {
		fmt.Fprintf(os.Stderr, "level=ERROR msg=\"daemon exiting\" err=%q\n", err.Error())
		return 1
	}
	defer lock.Release()
	d := &fakeDaemon{inst: inst, stop: make(chan struct{}), done: make(chan struct{})}
	d.cond = sync.NewCond(&d.mu)
	d.st = api.Status{Name: name, State: api.StateStarting, PID: os.Getpid()}
	d.logf("daemon starting")
	time.Sleep(envDuration("BERTH_FAKE_SOCK_DELAY", 0))

	sock := inst.Path(store.ControlSock)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		st := d.st
		d.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		fl := w.(http.Flusher)
		for i := 0; ; i++ {
			d.mu.Lock()
			for i >= len(d.hist) {
				d.cond.Wait()
			}
			ev := d.hist[i]
			d.mu.Unlock()
			if enc.Encode(ev) != nil {
				return
			}
			fl.Flush()
			if ev.State == api.StateStopped || ev.State == api.StateError {
				return
			}
		}
	})
	mux.HandleFunc("POST /v1/stop", func(w http.ResponseWriter, r *http.Request) {
		d.once.Do(func() { close(d.stop) })
		<-d.done
		d.mu.Lock()
		st := d.st
		d.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)

	started := time.Now()
	inst.WriteState(store.State{State: api.StateStarting, PID: os.Getpid(), StartedAt: started})
	d.publish(api.Event{State: api.StateStarting})
	phase := envDuration("BERTH_FAKE_PHASE", 100*time.Millisecond)
	booted := true
	for _, p := range []string{api.PhasePrepare, api.PhaseKernel, api.PhaseAgent, api.PhaseEngine, api.PhaseSocket} {
		d.publish(api.Event{State: api.StateStarting, Phase: p})
		select {
		case <-d.stop:
		case <-time.After(phase):
		}
		if d.stopped() {
			booted = false
			d.logf("stop requested during boot")
			break
		}
		d.publish(api.Event{State: api.StateStarting, Phase: p, Done: true})
	}
	if booted {
		inst.WriteState(store.State{State: api.StateRunning, PID: os.Getpid(), StartedAt: started})
		d.publish(api.Event{State: api.StateRunning})
		select {
		case <-d.stop:
		case <-time.After(2 * time.Minute): // never outlive the test
		}
	}
	d.publish(api.Event{State: api.StateStopping})
	inst.WriteState(store.State{State: api.StateStopped})
	d.publish(api.Event{State: api.StateStopped})
	d.logf("daemon stopped")
	time.Sleep(envDuration("BERTH_FAKE_EXIT_DELAY", 0))
	os.Remove(sock)
	close(d.done)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return 0
}

// spawns returns the pids recorded in the BERTH_FAKE_SPAWNS file.
func spawns(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var pids []int
	for _, l := range splitLines(string(b)) {
		if pid, err := strconv.Atoi(l); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
