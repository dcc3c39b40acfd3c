package gui

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

// newTestInstance makes a private BERTH_HOME with the default instance in it. The path
// is short: unix socket paths are limited to about 100 bytes.
func newTestInstance(t *testing.T) *store.Instance {
	t.Helper()
	home, err := os.MkdirTemp("", "bt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	t.Setenv("BERTH_HOME", home)
	inst, err := store.Create(store.DefaultName, store.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// fakeHostd serves the control API the way hostd does: it holds the instance lock (so
// DaemonPID sees it), answers /v1/status, replays its event history to each /v1/events
// subscriber and then streams new events, and stops on POST /v1/stop.
type fakeHostd struct {
	t    *testing.T
	inst *store.Instance
	lock *store.Lock
	srv  *http.Server

	mu      sync.Mutex
	status  api.Status
	history []api.Event
	subs    map[chan api.Event]struct{}
	done    chan struct{}
	ended   bool
	stops   atomic.Int32
}

func startFakeHostd(t *testing.T, inst *store.Instance, engineSock string) *fakeHostd {
	t.Helper()
	lock, err := inst.TryLock()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeHostd{t: t, inst: inst, lock: lock, subs: map[chan api.Event]struct{}{}, done: make(chan struct{})}
	f.status = api.Status{Name: inst.Name, State: api.StateStarting, PID: os.Getpid(), CPUs: 2, MemoryGiB: 2, DiskGiB: 64,
		DockerSocket: engineSock, DockerContext: "berth", StartedAt: time.Now(), Arch: "amd64", Accel: "tcg"}
	os.Remove(inst.Path(store.ControlSock))
	ln, err := net.Listen("unix", inst.Path(store.ControlSock))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		st := f.status
		f.mu.Unlock()
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /v1/events", f.handleEvents)
	mux.HandleFunc("POST /v1/stop", func(w http.ResponseWriter, r *http.Request) {
		f.stops.Add(1)
		f.setState(api.StateStopping, "", "")
		time.Sleep(20 * time.Millisecond)
		f.end(api.StateStopped, "")
		json.NewEncoder(w).Encode(f.Status())
	})
	mux.HandleFunc("GET /v1/logs", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s log line 1\n%s log line 2\n", r.URL.Query().Get("name"), r.URL.Query().Get("name"))
	})
	f.srv = &http.Server{Handler: mux}
	go f.srv.Serve(ln)
	t.Cleanup(func() { f.end(api.StateStopped, "") })
	f.publish(api.Event{State: api.StateStarting})
	return f
}

func (f *fakeHostd) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeHostd) publish(ev api.Event) {
	ev.Time = time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.history = append(f.history, ev)
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (f *fakeHostd) setState(state, phase, errMsg string) {
	f.mu.Lock()
	f.status.State, f.status.Phase, f.status.Error = state, phase, errMsg
	f.mu.Unlock()
	f.publish(api.Event{State: state, Phase: phase, Error: errMsg})
}

// run walks through the start phases to Running.
func (f *fakeHostd) run() {
	for _, p := range []string{api.PhasePrepare, api.PhaseKernel, api.PhaseAgent, api.PhaseEngine, api.PhaseSocket} {
		f.setState(api.StateStarting, p, "")
	}
	f.setState(api.StateRunning, "", "")
}

// portError announces a port that could not be forwarded, as hostd's port manager does.
func (f *fakeHostd) portError(msg string) {
	f.mu.Lock()
	state := f.status.State
	f.status.Ports = append(f.status.Ports, api.PortForward{Proto: "tcp", HostIP: "127.0.0.1", HostPort: 8090, State: "failed", Error: msg})
	f.mu.Unlock()
	f.publish(api.Event{State: state, Error: "port tcp/8090: " + msg})
}

func (f *fakeHostd) setDisk(used, total uint64) {
	f.mu.Lock()
	f.status.Guest = &api.Guest{EngineVersion: "20.10.24", DataDisk: api.DiskUsage{Used: used, Total: total}}
	f.mu.Unlock()
}

// end publishes the final state, ends every event stream, closes the socket and drops
// the lock: the daemon exits.
func (f *fakeHostd) end(state, errMsg string) {
	f.mu.Lock()
	if f.ended {
		f.mu.Unlock()
		return
	}
	f.ended = true
	f.mu.Unlock()
	f.setState(state, "", errMsg)
	f.inst.WriteState(store.State{State: state, Error: errMsg})
	close(f.done)
	time.Sleep(20 * time.Millisecond)
	f.srv.Close()
	f.lock.Release()
}

func (f *fakeHostd) handleEvents(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	ch := make(chan api.Event, len(f.history)+64)
	for _, ev := range f.history {
		ch <- ev
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	enc := json.NewEncoder(w)
	for {
		select {
		case ev := <-ch:
			enc.Encode(ev)
			fl.Flush()
		case <-f.done:
			for {
				select {
				case ev := <-ch:
					enc.Encode(ev)
				default:
					return
				}
			}
		case <-r.Context().Done():
			return
		}
	}
}

// fakeEngine serves the part of the Docker Engine API the tray uses.
type fakeEngine struct {
	sock  string
	srv   *http.Server
	lists atomic.Int32 // GET /containers/json calls

	mu         sync.Mutex
	containers map[string]*apiContainer
	subs       map[chan EngineEvent]struct{}
	actions    []string
}

func startFakeEngine(t *testing.T, sock string) *fakeEngine {
	t.Helper()
	os.MkdirAll(filepath.Dir(sock), 0o700)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEngine{sock: sock, containers: map[string]*apiContainer{}, subs: map[chan EngineEvent]struct{}{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containers/json", func(w http.ResponseWriter, r *http.Request) {
		e.lists.Add(1)
		if r.URL.Query().Get("all") != "1" {
			http.Error(w, `{"message":"want all=1"}`, http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		// Never nil: the engine answers [] for no containers, not null.
		list := append([]*apiContainer{}, slices.SortedFunc(maps.Values(e.containers), func(a, b *apiContainer) int { return cmp.Compare(a.ID, b.ID) })...)
		json.NewEncoder(w).Encode(list)
		e.mu.Unlock()
	})
	mux.HandleFunc("POST /containers/{id}/{action}", func(w http.ResponseWriter, r *http.Request) {
		id, action := r.PathValue("id"), r.PathValue("action")
		e.mu.Lock()
		c := e.containers[id]
		if c == nil {
			e.mu.Unlock()
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"message":"No such container: %s"}`, id)
			return
		}
		e.actions = append(e.actions, action+" "+id)
		switch action {
		case "start", "restart":
			c.State, c.Status = "running", "Up Less than a second"
		case "stop":
			c.State, c.Status = "exited", "Exited (0) Less than a second ago"
		}
		e.mu.Unlock()
		e.emit(action, id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /containers/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		e.mu.Lock()
		e.actions = append(e.actions, "remove "+id+" force="+r.URL.Query().Get("force"))
		delete(e.containers, id)
		e.mu.Unlock()
		e.emit("destroy", id)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /containers/{id}/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("stdout") != "1" || q.Get("stderr") != "1" || q.Get("tail") != "200" {
			http.Error(w, `{"message":"bad query"}`, http.StatusBadRequest)
			return
		}
		for i, line := range []string{"hello from stdout\n", "oops on stderr\n"} {
			hdr := make([]byte, 8)
			hdr[0] = byte(i + 1)
			binary.BigEndian.PutUint32(hdr[4:], uint32(len(line)))
			w.Write(hdr)
			w.Write([]byte(line))
		}
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Query().Get("filters"), "container") {
			http.Error(w, `{"message":"want a container filter"}`, http.StatusBadRequest)
			return
		}
		ch := make(chan EngineEvent, 64)
		e.mu.Lock()
		e.subs[ch] = struct{}{}
		e.mu.Unlock()
		defer func() {
			e.mu.Lock()
			delete(e.subs, ch)
			e.mu.Unlock()
		}()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		enc := json.NewEncoder(w)
		for {
			select {
			case ev := <-ch:
				enc.Encode(ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	e.srv = &http.Server{Handler: mux}
	go e.srv.Serve(ln)
	t.Cleanup(func() { e.srv.Close() })
	return e
}

func (e *fakeEngine) emit(action, id string) {
	ev := EngineEvent{Type: "container", Action: action}
	ev.Actor.ID = id
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.subs {
		ch <- ev
	}
}

// run adds a running container publishing ports, as `docker run -d -p` would.
func (e *fakeEngine) run(id, name, image string, ports ...[2]int) {
	c := &apiContainer{ID: id, Names: []string{"/" + name}, Image: image, State: "running", Status: "Up 2 seconds"}
	for _, p := range ports {
		for _, ip := range []string{"0.0.0.0", "::"} {
			c.Ports = append(c.Ports, struct {
				IP          string `json:"IP"`
				PrivatePort int    `json:"PrivatePort"`
				PublicPort  int    `json:"PublicPort"`
				Type        string `json:"Type"`
			}{ip, p[1], p[0], "tcp"})
		}
	}
	e.mu.Lock()
	e.containers[id] = c
	e.mu.Unlock()
	e.emit("create", id)
	e.emit("start", id)
}

func (e *fakeEngine) Actions() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.actions...)
}

// waitFor polls cond (cheap, in-process) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
