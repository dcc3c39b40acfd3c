package gui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/store"
)

type notes struct {
	mu   sync.Mutex
	list []string
}

func (n *notes) add(title, body string) {
	n.mu.Lock()
	n.list = append(n.list, title+": "+body)
	n.mu.Unlock()
}

func (n *notes) reset() {
	n.mu.Lock()
	n.list = nil
	n.mu.Unlock()
}

func (n *notes) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.list...)
}

func (n *notes) has(sub string) bool {
	for _, s := range n.all() {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// harness is a controller against a fake daemon and a fake engine.
type harness struct {
	t      *testing.T
	inst   *store.Instance
	ctrl   *Controller
	notes  *notes
	engine *fakeEngine
	hostd  *fakeHostd
	mu     sync.Mutex
	cancel context.CancelFunc
}

func newHarness(t *testing.T, start Starter, changed func()) *harness {
	return newHarnessAfter(t, start, changed, nil)
}

// newHarnessAfter runs before (if any) before the controller starts.
func newHarnessAfter(t *testing.T, start Starter, changed func(), before func(*harness)) *harness {
	t.Helper()
	h := &harness{t: t, inst: newTestInstance(t), notes: &notes{}}
	h.engine = startFakeEngine(t, h.inst.Path(store.DockerSock))
	if before != nil {
		before(h)
	}
	if start == nil {
		start = func(ctx context.Context, name string) error {
			h.startDaemon().run()
			return nil
		}
	}
	ctrl, err := NewController(Options{
		Start: start, Notify: h.notes.add, Changed: changed,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = ctrl
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	done := make(chan struct{})
	go func() { ctrl.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func (h *harness) startDaemon() *fakeHostd {
	f := startFakeHostd(h.t, h.inst, h.engine.sock)
	h.mu.Lock()
	h.hostd = f
	h.mu.Unlock()
	return f
}

func (h *harness) daemon() *fakeHostd {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hostd
}

func (h *harness) waitState(state string) Snapshot {
	h.t.Helper()
	var s Snapshot
	waitFor(h.t, "state "+state, func() bool { s = h.ctrl.Snapshot(); return s.State == state && s.Busy == "" })
	return s
}

func enabled(s Snapshot) map[string]bool {
	m := map[string]bool{}
	for _, it := range Menu(s) {
		if it.ID != "" {
			m[it.ID] = it.Enabled
		}
	}
	return m
}

func TestControllerFollowsADaemonStartedElsewhere(t *testing.T) {
	h := newHarness(t, nil, nil)
	s := h.waitState(api.StateStopped)
	if s.Look() != LookStopped || !enabled(s)[ItemStart] || enabled(s)[ItemStop] || enabled(s)[ItemShell] {
		t.Fatalf("stopped: look %v, menu %v", s.Look(), enabled(s))
	}

	// `berth start` in a terminal: the tray notices without being asked.
	h.engine.run("c1", "web", "nginx:latest", [2]int{8080, 80})
	f := h.startDaemon()
	f.run()
	s = h.waitState(api.StateRunning)
	if s.Look() != LookRunning || enabled(s)[ItemStart] || !enabled(s)[ItemStop] || !enabled(s)[ItemRestart] || !enabled(s)[ItemShell] {
		t.Fatalf("running: look %v, menu %v", s.Look(), enabled(s))
	}
	waitFor(t, "the container list", func() bool { return len(h.ctrl.Snapshot().Containers) == 1 })
	c := h.ctrl.Snapshot().Containers[0]
	if c.Name != "web" || len(c.Ports) != 1 || c.Ports[0].Label() != "localhost:8080" || c.Ports[0].URL().String() != "http://localhost:8080/" {
		t.Fatalf("container = %+v", c)
	}

	// The VM dies: the icon says so and a notification tells why.
	f.end(api.StateError, "qemu exited: signal: killed")
	waitFor(t, "error state", func() bool { s = h.ctrl.Snapshot(); return s.Look() == LookError && !s.Daemon })
	if !h.notes.has("the VM stopped: qemu exited: signal: killed") {
		t.Errorf("notifications %q", h.notes.all())
	}
	if !enabled(s)[ItemStart] || len(s.Containers) != 0 {
		t.Errorf("after the VM died: menu %v, containers %v", enabled(s), s.Containers)
	}
	waitFor(t, "the last run's error while stopped", func() bool {
		s = h.ctrl.Snapshot()
		return s.State == api.StateStopped && strings.Contains(s.Error, "last run failed") && s.Look() == LookError
	})
}

func TestControllerStartStopRestart(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.waitState(api.StateStopped)
	if err := h.ctrl.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.waitState(api.StateRunning)
	if err := h.ctrl.Start(t.Context()); err == nil || !h.notes.has("start failed: instance \"default\" is already running") {
		t.Errorf("a second start: %v, notifications %q", err, h.notes.all())
	}
	h.notes.reset()

	first := h.daemon()
	if err := h.ctrl.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if first.stops.Load() != 1 || h.daemon() == first {
		t.Fatalf("restart: %d stops, new daemon %v", first.stops.Load(), h.daemon() != first)
	}
	h.waitState(api.StateRunning)

	if err := h.ctrl.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	s := h.waitState(api.StateStopped)
	if h.inst.DaemonPID() != 0 || s.Error != "" || s.Look() != LookStopped {
		t.Errorf("after stop: pid %d, error %q, look %v", h.inst.DaemonPID(), s.Error, s.Look())
	}
	if n := h.notes.all(); len(n) != 0 {
		t.Errorf("unexpected notifications %q", n)
	}
}

func TestControllerStartFailure(t *testing.T) {
	h := newHarness(t, func(ctx context.Context, name string) error {
		return errors.New("no guest image for amd64 in /nowhere: build it with `make image`")
	}, nil)
	h.waitState(api.StateStopped)
	if err := h.ctrl.Start(t.Context()); err == nil {
		t.Fatal("start succeeded")
	}
	s := h.ctrl.Snapshot()
	if s.Look() != LookError || s.State != api.StateStopped || !strings.Contains(s.ActionError, "no guest image") || !enabled(s)[ItemStart] {
		t.Errorf("after a failed start: %+v", s)
	}
	if !h.notes.has("start failed: no guest image") {
		t.Errorf("notifications %q", h.notes.all())
	}
}

func TestControllerNotifications(t *testing.T) {
	// A problem from before the tray connected is history: shown, not notified.
	h := newHarnessAfter(t, nil, nil, func(h *harness) {
		f := h.startDaemon()
		f.run()
		f.portError("address already in use (old)")
	})
	f := h.daemon()
	h.waitState(api.StateRunning)
	time.Sleep(50 * time.Millisecond)
	if h.notes.has("(old)") {
		t.Errorf("a replayed event was notified: %q", h.notes.all())
	}

	f.portError("listen tcp 127.0.0.1:8090: bind: address already in use")
	waitFor(t, "the port notification", func() bool { return h.notes.has("port not forwarded: port tcp/8090: listen") })
	waitFor(t, "the failed port in the status", func() bool { return len(h.ctrl.Snapshot().Status.Ports) == 2 })
	if p := problems(h.ctrl.Snapshot()); !strings.Contains(p, "Port 127.0.0.1:8090/tcp not forwarded") {
		t.Errorf("problems = %q", p)
	}

	// Disk: 95% used. One warning per daemon run, however many status reads.
	f.setDisk(95<<30, 100<<30)
	f.portError("again")
	waitFor(t, "the disk notification", func() bool { return h.notes.has("data disk nearly full: 95% of 100.0 GiB used") })
	f.portError("and again")
	waitFor(t, "the third port notification", func() bool { return h.notes.has("and again") })
	n := 0
	for _, s := range h.notes.all() {
		if strings.Contains(s, "nearly full") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d disk warnings: %q", n, h.notes.all())
	}
}

// diskEvent announces a data-disk usage as hostd does on an update from the agent. The
// fake's status keeps its old usage: what the controller shows comes from the event.
func diskEvent(f *fakeHostd, used, total uint64) {
	u := api.DiskUsage{Used: used, Total: total}
	f.publish(api.Event{Type: api.EventDisk, State: f.Status().State, Disk: &u})
}

func TestControllerDiskWarningDuringARun(t *testing.T) {
	const gib = 1 << 30
	h := newHarnessAfter(t, nil, nil, func(h *harness) {
		f := h.startDaemon()
		f.setDisk(50*gib, 100*gib)
		f.run()
	})
	f := h.daemon()
	h.waitState(api.StateRunning)
	before := h.ctrl.Snapshot()
	warnings := func() int {
		n := 0
		for _, s := range h.notes.all() {
			if strings.Contains(s, "data disk nearly full") {
				n++
			}
		}
		return n
	}
	// show sends a usage and waits until the snapshot has it.
	show := func(used uint64) {
		t.Helper()
		diskEvent(f, used, 100*gib)
		waitFor(t, fmt.Sprintf("%d GiB used in the snapshot", used/gib), func() bool {
			g := h.ctrl.Snapshot().Status.Guest
			return g != nil && g.DataDisk.Used == used
		})
	}

	// Filling up during the run: warned at the crossing, once.
	show(95 * gib)
	if !h.notes.has("data disk nearly full: 95% of 100.0 GiB used") {
		t.Fatalf("no warning at 95%%: %q", h.notes.all())
	}
	s := h.ctrl.Snapshot()
	if s.State != api.StateRunning || s.Status.Guest.EngineVersion != "20.10.24" || diskWarning(s.Status) == "" {
		t.Errorf("after the disk event: state %s, guest %+v", s.State, s.Status.Guest)
	}
	if before.Status.Guest.DataDisk.Used != 50*gib {
		t.Errorf("a snapshot handed out earlier changed: %+v", before.Status.Guest.DataDisk)
	}
	show(97 * gib)
	// A little cleanup is not enough to warn again at the next crossing...
	show(88 * gib)
	show(93 * gib)
	if n := warnings(); n != 1 {
		t.Fatalf("%d disk warnings before a real cleanup: %q", n, h.notes.all())
	}
	// ...a real one is: filling up again is told again.
	show(60 * gib)
	show(92 * gib)
	if n := warnings(); n != 2 || !h.notes.has("92% of 100.0 GiB used") {
		t.Fatalf("%d disk warnings after cleaning up and filling again: %q", n, h.notes.all())
	}
	// Status reads (here after a port problem) do not repeat it.
	f.setDisk(92*gib, 100*gib)
	f.portError("in use")
	waitFor(t, "the port notification", func() bool { return h.notes.has("in use") })
	if n := warnings(); n != 2 {
		t.Errorf("%d disk warnings: %q", n, h.notes.all())
	}
}

func TestControllerReconnectsToANewDaemon(t *testing.T) {
	h := newHarness(t, nil, nil)
	f := h.startDaemon()
	f.run()
	h.waitState(api.StateRunning)
	f.end(api.StateStopped, "")
	h.waitState(api.StateStopped)
	g := h.startDaemon()
	g.run()
	h.waitState(api.StateRunning)
	if n := h.notes.all(); len(n) != 0 {
		t.Errorf("unexpected notifications %q", n)
	}
}

func TestControllerEngineFollowsEventsWithoutPolling(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.startDaemon().run()
	h.waitState(api.StateRunning)
	waitFor(t, "the first list", func() bool { return h.ctrl.Snapshot().EngineReady })

	h.engine.run("c2", "db", "postgres:16", [2]int{5432, 5432})
	waitFor(t, "the new container", func() bool { return len(h.ctrl.Snapshot().Containers) == 1 })

	// Idle: nothing happens, nothing is listed.
	time.Sleep(200 * time.Millisecond)
	before := h.engine.lists.Load()
	time.Sleep(500 * time.Millisecond)
	if after := h.engine.lists.Load(); after != before {
		t.Errorf("%d lists while idle", after-before)
	}

	if err := h.ctrl.ContainerAction(t.Context(), "c2", ActionStop); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stopped container", func() bool {
		cs := h.ctrl.Snapshot().Containers
		return len(cs) == 1 && cs[0].State == "exited"
	})
	logs, err := h.ctrl.ContainerLogs(t.Context(), "c2")
	if err != nil || logs != "hello from stdout\noops on stderr\n" {
		t.Errorf("logs = %q, %v", logs, err)
	}
	if err := h.ctrl.ContainerAction(t.Context(), "c2", ActionRemove); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removal", func() bool { return len(h.ctrl.Snapshot().Containers) == 0 })
	if got := strings.Join(h.engine.Actions(), ";"); got != "stop c2;remove c2 force=1" {
		t.Errorf("actions %q", got)
	}
	if err := h.ctrl.ContainerAction(t.Context(), "nope", ActionStart); err == nil || !strings.Contains(err.Error(), "No such container") {
		t.Errorf("unknown container: %v", err)
	}
}

func TestControllerLogs(t *testing.T) {
	h := newHarness(t, nil, nil)
	if _, err := h.ctrl.InstanceLog(t.Context(), LogEngine); err == nil {
		t.Error("engine log of a stopped instance")
	}
	h.startDaemon().run()
	h.waitState(api.StateRunning)
	if s, err := h.ctrl.InstanceLog(t.Context(), LogEngine); err != nil || !strings.Contains(s, "engine log line 2") {
		t.Errorf("engine log = %q, %v", s, err)
	}
	if _, err := h.ctrl.InstanceLog(t.Context(), LogDaemon); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing hostd.log: %v", err)
	}
}

func TestTailReader(t *testing.T) {
	s, _ := tailReader(strings.NewReader("aaaa\nbbbb\ncccc\n"), 8)
	if s != "cccc\n" {
		t.Errorf("tail = %q", s)
	}
	s, _ = tailReader(strings.NewReader("short\n"), 100)
	if s != "short\n" {
		t.Errorf("tail = %q", s)
	}
}
