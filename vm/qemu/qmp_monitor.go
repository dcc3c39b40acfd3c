package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/vm"
)

// qmpMonitor keeps one connection to QEMU's second QMP monitor (qmpEventsSocket) for the
// VM's life. QEMU's QMP chardev serves one client at a time, so the stop path keeps the
// first monitor (qmpSocket) to itself and this one only follows events and sends the few
// commands that go with them (cont, query-status). It reports BLOCK_IO_ERROR events on
// IOErrors and logs STOP and RESUME.
type qmpMonitor struct {
	log   *slog.Logger
	disks []vm.Disk // drive "diskN" is disks[N] (see Args)

	once sync.Once
	errs chan vm.IOError
	emu  sync.Mutex // serialises sends on errs (drop-oldest)

	mu      sync.Mutex
	conn    *qmpConn      // nil while not connected
	changed chan struct{} // closed and replaced whenever conn changes

	// logged: an I/O error was logged since the last RESUME. QEMU reports one per failed
	// request (a queue's worth at once); only the first of a pause is logged as a warning.
	// Used by the reader goroutine only.
	logged bool
}

// ioErrorBuffer is how many I/O errors wait for a slow reader; QEMU reports one per
// failed request, and only the latest matter.
const ioErrorBuffer = 16

func newQMPMonitor(disks []vm.Disk, log *slog.Logger) *qmpMonitor {
	return &qmpMonitor{log: log, disks: disks}
}

func (m *qmpMonitor) init() {
	m.once.Do(func() {
		m.errs = make(chan vm.IOError, ioErrorBuffer)
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		m.mu.Unlock()
	})
}

// IOErrors: see vm.IOErrorWatcher.
func (m *qmpMonitor) IOErrors() <-chan vm.IOError {
	m.init()
	return m.errs
}

// emit queues e, dropping the oldest queued error when the reader lags.
func (m *qmpMonitor) emit(e vm.IOError) {
	m.init()
	m.emu.Lock()
	defer m.emu.Unlock()
	for {
		select {
		case m.errs <- e:
			return
		default:
		}
		select {
		case <-m.errs:
		default:
		}
	}
}

// run connects to the events monitor at path, retrying until QEMU listens, and follows it
// until gone is closed (QEMU exited). A connection that ends while QEMU lives is made again.
func (m *qmpMonitor) run(path string, gone <-chan struct{}) {
	m.init()
	backoff := 20 * time.Millisecond
	for {
		select {
		case <-gone:
			return
		default:
		}
		qc, err := dialQMP(path, gone)
		if err != nil {
			select {
			case <-gone:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 20 * time.Millisecond
		m.setConn(qc)
		go m.checkPaused(qc)
		err = qc.readLoop(m.event)
		m.setConn(nil)
		// The connection ends first when QEMU exits: give its exit a moment to show.
		select {
		case <-gone:
			return
		case <-time.After(time.Second):
			m.log.Warn("QMP event monitor connection ended; reconnecting", "err", err)
		}
	}
}

func (m *qmpMonitor) setConn(qc *qmpConn) {
	m.mu.Lock()
	m.conn = qc
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// connection returns the live connection, waiting for one until ctx ends.
func (m *qmpMonitor) connection(ctx context.Context) (*qmpConn, error) {
	m.init()
	for {
		m.mu.Lock()
		qc, changed := m.conn, m.changed
		m.mu.Unlock()
		if qc != nil && !qc.closed() {
			return qc, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("no QMP event monitor connection: %w", ctx.Err())
		}
	}
}

// Resume sends `cont`. QEMU then retries the requests that failed; if the host is still
// full the VM pauses again at once and a new BLOCK_IO_ERROR follows.
func (m *qmpMonitor) Resume(ctx context.Context) error {
	qc, err := m.connection(ctx)
	if err != nil {
		return err
	}
	if _, err := qc.execute(ctx, "cont"); err != nil {
		return fmt.Errorf("QMP cont: %w", err)
	}
	return nil
}

// Status returns QEMU's run state ("running", "paused", "io-error", ...).
func (m *qmpMonitor) Status(ctx context.Context) (string, error) {
	qc, err := m.connection(ctx)
	if err != nil {
		return "", err
	}
	return qc.status(ctx)
}

// checkPaused reports a VM that already sits paused on an I/O error when the monitor
// connects (its event went to nobody): query-block names the device and whether the host
// was full.
func (m *qmpMonitor) checkPaused(qc *qmpConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := qc.status(ctx)
	if err != nil || st != "io-error" {
		return
	}
	e := vm.IOError{Paused: true, Message: "the VM is paused on an I/O error (found at connect)"}
	if raw, err := qc.execute(ctx, "query-block"); err == nil {
		var blocks []struct {
			Device   string `json:"device"`
			IOStatus string `json:"io-status"`
		}
		if json.Unmarshal(raw, &blocks) == nil {
			for _, b := range blocks {
				if b.IOStatus == "nospace" || b.IOStatus == "failed" {
					e.Device, e.NoSpace = b.Device, b.IOStatus == "nospace"
					if e.NoSpace {
						e.Message = "No space left on device"
					}
					break
				}
			}
		}
	}
	e.Path = m.diskPath(e.Device)
	m.log.Warn("VM found paused on an I/O error", "device", e.Device, "nospace", e.NoSpace)
	m.emit(e)
}

// event handles one asynchronous QMP event.
func (m *qmpMonitor) event(name string, data json.RawMessage) {
	switch name {
	case "BLOCK_IO_ERROR":
		var d struct {
			Device    string `json:"device"`
			NodeName  string `json:"node-name"`
			Operation string `json:"operation"`
			Action    string `json:"action"`
			NoSpace   bool   `json:"nospace"`
			Reason    string `json:"reason"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			m.log.Warn("bad BLOCK_IO_ERROR event", "err", err, "data", string(data))
			return
		}
		dev := d.Device
		if dev == "" {
			dev = d.NodeName
		}
		e := vm.IOError{Device: dev, Path: m.diskPath(d.Device), NoSpace: d.NoSpace, Paused: d.Action == "stop", Message: d.Reason}
		level := slog.LevelWarn
		if m.logged {
			level = slog.LevelDebug
		}
		m.logged = true
		m.log.Log(context.Background(), level, "host I/O error on a VM disk", "device", dev, "path", e.Path, "operation", d.Operation,
			"action", d.Action, "nospace", d.NoSpace, "reason", d.Reason)
		m.emit(e)
	case "STOP", "RESUME":
		if name == "RESUME" {
			m.logged = false
		}
		m.log.Info("VM "+strings.ToLower(name)+" (QMP event)", "event", name)
	}
}

// diskPath maps QEMU's drive id ("disk1") to the image path.
func (m *qmpMonitor) diskPath(device string) string {
	n, ok := strings.CutPrefix(device, "disk")
	if !ok {
		return ""
	}
	i, err := strconv.Atoi(n)
	if err != nil || i < 0 || i >= len(m.disks) {
		return ""
	}
	return m.disks[i].Path
}

// qmpConn is one negotiated QMP connection: a reader goroutine (readLoop) dispatches
// events and hands each answer to the command waiting for its id.
type qmpConn struct {
	c    net.Conn
	r    *bufio.Reader
	wmu  sync.Mutex // one writer at a time
	done chan struct{}

	mu      sync.Mutex
	nextID  uint64
	waiting map[string]chan qmpReply
}

type qmpReply struct {
	ret json.RawMessage
	err error
}

// qmpHandshakeTimeout bounds the greeting and capability negotiation.
const qmpHandshakeTimeout = 10 * time.Second

// dialQMP connects to path and negotiates capabilities. gone aborts the dial.
func dialQMP(path string, gone <-chan struct{}) (*qmpConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), qmpHandshakeTimeout)
	defer cancel()
	go func() {
		select {
		case <-gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	qc, err := handshakeQMP(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return qc, nil
}

// handshakeQMP reads the greeting and leaves capabilities negotiation mode.
func handshakeQMP(ctx context.Context, c net.Conn) (*qmpConn, error) {
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	r := bufio.NewReader(c)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := readQMP(r, &greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("no QMP greeting: %v", err)
	}
	if _, err := fmt.Fprintf(c, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		return nil, err
	}
	if err := waitReturn(r); err != nil {
		return nil, fmt.Errorf("QMP qmp_capabilities: %w", err)
	}
	if !stop() || ctx.Err() != nil {
		return nil, errors.New("QMP handshake cancelled")
	}
	c.SetDeadline(time.Time{})
	return &qmpConn{c: c, r: r, done: make(chan struct{}), waiting: map[string]chan qmpReply{}}, nil
}

// readLoop reads messages until the connection ends: events go to onEvent, answers to
// their command. It closes the connection on return.
func (q *qmpConn) readLoop(onEvent func(name string, data json.RawMessage)) error {
	defer func() {
		q.c.Close()
		close(q.done)
	}()
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return err
		}
		var m struct {
			Event  string          `json:"event"`
			Data   json.RawMessage `json:"data"`
			ID     json.RawMessage `json:"id"`
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			continue // not ours to fail on: QMP is line-delimited JSON
		}
		switch {
		case m.Event != "":
			onEvent(m.Event, m.Data)
		case m.Return != nil || m.Error != nil:
			var rep qmpReply
			if m.Error != nil {
				rep.err = fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
			} else {
				rep.ret = m.Return
			}
			q.mu.Lock()
			ch := q.waiting[string(m.ID)]
			delete(q.waiting, string(m.ID))
			q.mu.Unlock()
			if ch != nil {
				ch <- rep // buffered: never blocks
			}
		}
	}
}

func (q *qmpConn) closed() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// execute runs one command and returns its "return" value, within ctx.
func (q *qmpConn) execute(ctx context.Context, command string) (json.RawMessage, error) {
	q.mu.Lock()
	q.nextID++
	id := strconv.Quote("berth-" + strconv.FormatUint(q.nextID, 10))
	ch := make(chan qmpReply, 1)
	q.waiting[id] = ch
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.waiting, id)
		q.mu.Unlock()
	}()
	msg := fmt.Sprintf(`{"execute":%q,"id":%s}`+"\n", command, id)
	q.wmu.Lock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(10 * time.Second)
	}
	q.c.SetWriteDeadline(dl)
	_, err := q.c.Write([]byte(msg))
	q.c.SetWriteDeadline(time.Time{})
	q.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case rep := <-ch:
		return rep.ret, rep.err
	case <-q.done:
		return nil, errors.New("QMP connection closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// status runs query-status.
func (q *qmpConn) status(ctx context.Context) (string, error) {
	raw, err := q.execute(ctx, "query-status")
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("query-status: %w", err)
	}
	return st.Status, nil
}
