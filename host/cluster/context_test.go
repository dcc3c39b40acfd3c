//go:build darwin || linux

package cluster

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/host/store"
)

// fakeEngine serves GET /info on inst's docker socket with the given swarm control state.
func fakeEngine(t *testing.T, inst *store.Instance, control bool) {
	t.Helper()
	ln, err := net.Listen("unix", inst.Path(store.DockerSock))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"Swarm":{"LocalNodeState":"active","ControlAvailable":%v}}`, control)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// TestPointContext: the context goes to the first running member with the swarm's control
// plane, skipping the one that stops; a promoted worker counts as a manager; with none
// left it says so and the context stays.
func TestPointContext(t *testing.T) {
	tempHome(t)
	t.Setenv("DOCKER_CONFIG", filepath.Join(t.TempDir(), "docker"))
	rec, err := Create("demo", 3, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	insts := map[string]*store.Instance{}
	for _, m := range rec.Members {
		cfg := store.DefaultConfig()
		cfg.Cluster = "demo"
		inst, err := store.Create(m.Instance, cfg)
		if err != nil {
			t.Fatal(err)
		}
		insts[m.Instance] = inst
	}
	run := func(name string, control bool) {
		l, err := insts[name].TryLock() // the instance's daemon lock: DaemonPID is this test
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Release)
		fakeEngine(t, insts[name], control)
	}
	run("demo-1", true)
	run("demo-2", false) // a worker
	if to, err := PointContext(t.Context(), rec, ""); err != nil || to != "demo-1" || ContextOn(rec) != "demo-1" {
		t.Fatalf("context on %q (%q), %v", to, ContextOn(rec), err)
	}
	// demo-1 stops: no other member has the control plane; the context stays.
	if _, err := PointContext(t.Context(), rec, "demo-1"); err == nil || ContextOn(rec) != "demo-1" {
		t.Fatalf("moved to a worker: %v, context on %q", err, ContextOn(rec))
	}
	// demo-3, a worker the user promoted, runs: the context moves there.
	run("demo-3", true)
	if to, err := PointContext(t.Context(), rec, "demo-1"); err != nil || to != "demo-3" || ContextOn(rec) != "demo-3" {
		t.Fatalf("context on %q (%q), %v", to, ContextOn(rec), err)
	}
}
