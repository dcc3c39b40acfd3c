package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/vm"
)

// fakeQMP is a QMP server on a unix socket: it greets, requires qmp_capabilities first,
// answers commands through answer, and writes whatever is sent on events.
type fakeQMP struct {
	t      *testing.T
	path   string
	ln     net.Listener
	events chan string // raw lines written to the current client
	// answer returns the "return" value (JSON) or an error desc for a command.
	answer func(cmd string) (ret string, errDesc string)

	mu       sync.Mutex
	commands []string // every command received, in order, qmp_capabilities included
	conns    int
	drop     chan struct{} // closing it ends the current connection
}

func newFakeQMP(t *testing.T) *fakeQMP {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp-events.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{t: t, path: path, ln: ln, events: make(chan string, 16), drop: make(chan struct{}),
		answer: func(cmd string) (string, string) {
			if cmd == "query-status" {
				return `{"status":"running","singlestep":false,"running":true}`, ""
			}
			return `{}`, ""
		}}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeQMP) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns++
		drop := f.drop
		f.mu.Unlock()
		f.handle(c, drop)
	}
}

// handle serves one client at a time, as QEMU's chardev does.
func (f *fakeQMP) handle(c net.Conn, drop chan struct{}) {
	defer c.Close()
	var wmu sync.Mutex
	write := func(s string) {
		wmu.Lock()
		defer wmu.Unlock()
		c.Write([]byte(s + "\n"))
	}
	write(`{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}`)
	done := make(chan struct{})
	defer close(done)
	negotiated := make(chan struct{})
	go func() {
		<-negotiated
		for {
			select {
			case ev := <-f.events:
				write(ev)
			case <-drop:
				c.Close()
				return
			case <-done:
				return
			}
		}
	}()
	r := bufio.NewReader(c)
	first := true
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			if first {
				close(negotiated)
			}
			return
		}
		var m struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			f.t.Errorf("client sent bad JSON %q", line)
			return
		}
		f.mu.Lock()
		f.commands = append(f.commands, m.Execute)
		f.mu.Unlock()
		id := ""
		if m.ID != nil {
			id = `, "id": ` + string(m.ID)
		}
		if first {
			if m.Execute != "qmp_capabilities" {
				write(`{"error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}` + id + `}`)
				continue
			}
			first = false
			write(`{"return": {}` + id + `}`)
			close(negotiated)
			continue
		}
		// An event between a command and its answer, as QEMU may send one.
		write(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED", "data": {"path": "/x"}}`)
		f.mu.Lock()
		answer := f.answer
		f.mu.Unlock()
		ret, desc := answer(m.Execute)
		if desc != "" {
			write(`{"error": {"class": "GenericError", "desc": "` + desc + `"}` + id + `}`)
		} else {
			write(`{"return": ` + ret + id + `}`)
		}
	}
}

func (f *fakeQMP) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...)
}

// dropConn ends the current client's connection.
func (f *fakeQMP) dropConn() {
	f.mu.Lock()
	close(f.drop)
	f.drop = make(chan struct{})
	f.mu.Unlock()
}

const ioErrorEvent = `{"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": "BLOCK_IO_ERROR", "data": {"device": "disk1", "nospace": true, "node-name": "#block312", "reason": "No space left on device", "operation": "write", "action": "stop"}}`

func testDisks() []vm.Disk {
	return []vm.Disk{{Path: "/i/root.img", ReadOnly: true, ID: "berth-root"}, {Path: "/s/default/data.img", ID: "berth-data"}}
}

// startMonitor runs a monitor against f until the test ends.
func startMonitor(t *testing.T, f *fakeQMP) *qmpMonitor {
	m := newQMPMonitor(testDisks(), slog.New(slog.DiscardHandler))
	gone := make(chan struct{})
	ended := make(chan struct{})
	go func() { defer close(ended); m.run(f.path, gone) }()
	t.Cleanup(func() {
		close(gone)
		f.ln.Close()
		f.dropConn()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Error("monitor did not end when QEMU was gone")
		}
	})
	return m
}

func nextIOError(t *testing.T, m *qmpMonitor) vm.IOError {
	t.Helper()
	select {
	case e := <-m.IOErrors():
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no I/O error reported")
	}
	return vm.IOError{}
}

func TestQMPMonitorReportsNoSpacePause(t *testing.T) {
	f := newFakeQMP(t)
	m := startMonitor(t, f)
	f.events <- `{"timestamp": {"seconds": 1, "microseconds": 1}, "event": "STOP"}`
	f.events <- ioErrorEvent
	e := nextIOError(t, m)
	want := vm.IOError{Device: "disk1", Path: "/s/default/data.img", NoSpace: true, Paused: true, Message: "No space left on device"}
	if e != want {
		t.Errorf("got %+v, want %+v", e, want)
	}
	// An error the guest sees (action report) is reported too, but not as a pause.
	f.events <- `{"event": "BLOCK_IO_ERROR", "data": {"device": "", "node-name": "n1", "operation": "read", "action": "report", "nospace": false, "reason": "Input/output error"}}`
	if e := nextIOError(t, m); e.Paused || e.NoSpace || e.Device != "n1" || e.Path != "" {
		t.Errorf("report action: %+v", e)
	}
	if got := f.sent(); len(got) == 0 || got[0] != "qmp_capabilities" {
		t.Errorf("commands %v: want qmp_capabilities first", got)
	}
}

func TestQMPMonitorResume(t *testing.T) {
	f := newFakeQMP(t)
	m := startMonitor(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := m.Status(ctx)
	if err != nil || st != "running" {
		t.Fatalf("status %q, %v", st, err)
	}
	got := strings.Join(f.sent(), " ")
	if !strings.Contains(got, "qmp_capabilities") || !strings.Contains(got, "cont query-status") {
		t.Errorf("commands %q", got)
	}

	// QEMU's error answer is the error.
	f.mu.Lock()
	f.answer = func(string) (string, string) { return "", "Resetting the Virtual Machine is required" }
	f.mu.Unlock()
	if err := m.Resume(ctx); err == nil || !strings.Contains(err.Error(), "Resetting") {
		t.Errorf("Resume with an error answer: %v", err)
	}
}

func TestQMPMonitorFindsPausedVMAtConnect(t *testing.T) {
	f := newFakeQMP(t)
	f.answer = func(cmd string) (string, string) {
		switch cmd {
		case "query-status":
			return `{"status": "io-error", "singlestep": false, "running": false}`, ""
		case "query-block":
			return `[{"device": "disk0", "io-status": "ok"}, {"device": "disk1", "io-status": "nospace"}]`, ""
		}
		return `{}`, ""
	}
	m := startMonitor(t, f)
	e := nextIOError(t, m)
	if !e.Paused || !e.NoSpace || e.Device != "disk1" || e.Path != "/s/default/data.img" {
		t.Errorf("got %+v", e)
	}
}

func TestQMPMonitorReconnects(t *testing.T) {
	f := newFakeQMP(t)
	m := startMonitor(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.Status(ctx); err != nil {
		t.Fatal(err)
	}
	f.dropConn()
	// The next command waits for the new connection instead of failing.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := f.conns
		f.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := m.Status(ctx); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
	f.events <- ioErrorEvent
	if e := nextIOError(t, m); !e.NoSpace {
		t.Errorf("after reconnect: %+v", e)
	}
}

// A Resume with nothing to talk to ends with its context.
func TestQMPMonitorResumeBounded(t *testing.T) {
	m := newQMPMonitor(nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := m.Resume(ctx); err == nil {
		t.Fatal("Resume without a connection succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Resume took %s", d)
	}
}

// A reader that lags loses the oldest errors, never blocks the monitor, and sees the latest.
func TestQMPMonitorDropsOldest(t *testing.T) {
	m := newQMPMonitor(nil, slog.New(slog.DiscardHandler))
	for i := range ioErrorBuffer + 5 {
		m.emit(vm.IOError{Message: fmt.Sprint(i)})
	}
	var last vm.IOError
	n := 0
	for len(m.IOErrors()) > 0 {
		last = <-m.IOErrors()
		n++
	}
	if n != ioErrorBuffer || last.Message != fmt.Sprint(ioErrorBuffer+4) {
		t.Errorf("kept %d, last %q", n, last.Message)
	}
}

// The handshake fails on something that is not a greeting, and on silence within its context.
func TestQMPHandshakeNeedsGreeting(t *testing.T) {
	for name, greet := range map[string]string{"not a greeting": `{"hello": 1}` + "\n", "silent": ""} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			if greet != "" {
				go b.Write([]byte(greet))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			if _, err := handshakeQMP(ctx, a); err == nil || !strings.Contains(err.Error(), "greeting") {
				t.Errorf("err = %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestDiskPath(t *testing.T) {
	m := newQMPMonitor(testDisks(), nil)
	for dev, want := range map[string]string{"disk0": "/i/root.img", "disk1": "/s/default/data.img", "disk2": "", "diskx": "", "": "", "#block1": ""} {
		if got := m.diskPath(dev); got != want {
			t.Errorf("diskPath(%q) = %q, want %q", dev, got, want)
		}
	}
}
