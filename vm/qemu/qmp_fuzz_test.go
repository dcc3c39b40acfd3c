package qemu

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/berth-dev/berth/vm"
)

// closeOnlyConn is the connection readLoop closes when its input ends; nothing else of it
// is used.
type closeOnlyConn struct{ net.Conn }

func (closeOnlyConn) Close() error { return nil }

// FuzzQMP: whatever QEMU writes on its QMP socket (greeting, answers, events) is skipped or
// handled; the monitor's event handler maps any BLOCK_IO_ERROR to a disk or to none, and a
// command gets at most one answer.
func FuzzQMP(f *testing.F) {
	f.Add([]byte(`{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": ["oob"]}}` + "\n" +
		`{"event":"STOP","timestamp":{"seconds":1,"microseconds":2}}` + "\n" +
		`{"return": {}, "id": "berth-1"}` + "\n"))
	f.Add([]byte(`{"event":"BLOCK_IO_ERROR","data":{"device":"disk1","node-name":"#block123","operation":"write","action":"stop","nospace":true,"reason":"No space left on device"}}` + "\n" +
		`{"event":"BLOCK_IO_ERROR","data":{"device":"disk-1"}}` + "\n" +
		`{"event":"BLOCK_IO_ERROR","data":{"device":"disk99999999999999999999"}}` + "\n" +
		`{"event":"BLOCK_IO_ERROR","data":[]}` + "\n" + `{"event":"RESUME"}` + "\n"))
	f.Add([]byte(`{"error": {"class": "GenericError", "desc": "no"}, "id": "berth-1"}` + "\n" + `{"return": 1, "id": "berth-1"}` + "\n"))
	f.Add([]byte("not json\n{\"return\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		waitReturn(bufio.NewReader(bytes.NewReader(b)))

		disks := []vm.Disk{{Path: "/root.img"}, {Path: "/data.img"}}
		m := newQMPMonitor(disks, slog.New(slog.NewTextHandler(io.Discard, nil)))
		m.init()
		reply := make(chan qmpReply, 2)
		q := &qmpConn{c: closeOnlyConn{}, r: bufio.NewReader(bytes.NewReader(b)), done: make(chan struct{}),
			waiting: map[string]chan qmpReply{`"berth-1"`: reply}}
		if err := q.readLoop(m.event); err != io.EOF {
			t.Fatalf("readLoop ended with %v, want EOF", err)
		}
		if len(reply) > 1 {
			t.Fatal("one command got two answers")
		}
		for len(m.errs) > 0 {
			e := <-m.errs
			if e.Path != "" && e.Path != disks[0].Path && e.Path != disks[1].Path {
				t.Fatalf("I/O error mapped to %q", e.Path)
			}
		}
		if !q.closed() {
			t.Fatal("readLoop left the connection open")
		}
	})
}
