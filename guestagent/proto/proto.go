// Package proto is the wire contract between the host daemon and berth-agent. It is shared
// by both sides and imports nothing platform-specific.
//
// The agent channel (vsock connection or virtio-serial port) carries one yamux session; the
// host opens streams, the agent accepts them. Every stream starts with one JSON line from the
// host (Request) answered by one JSON line from the agent (Response); what follows depends on
// the request type. See docs/agent-protocol.md.
package proto

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// Version is bumped on any incompatible change; the host refuses an agent that differs.
// 2: the channel handshake (Sync*), TypeCancel, and lines without a 64 KiB limit.
const Version = 2

// Default channel endpoints.
const (
	VsockPort  = 1024
	SerialName = "io.berth.agent"
)

// Request types.
const (
	TypeInfo     = "info"     // Response.Info, then the stream closes
	TypeTime     = "time"     // set the guest clock to Request.TimeUnixNano
	TypeShutdown = "shutdown" // stop the engine, sync, power off
	TypeDocker   = "docker"   // raw byte pipe to the engine socket; half-close is kept
	TypeExec     = "exec"     // framed exec session, see Frame*
	TypeEvents   = "events"   // the agent writes Event JSON lines until the stream closes
	TypeLogs     = "logs"     // raw log bytes of Request.Log ("agent" or "engine")
)

// Request is the first line of every stream.
type Request struct {
	Type         string        `json:"type"`
	TimeUnixNano int64         `json:"timeUnixNano,omitempty"`
	Exec         *ExecRequest  `json:"exec,omitempty"`
	Log          string        `json:"log,omitempty"`
	Follow       bool          `json:"follow,omitempty"`
	Port         int           `json:"port,omitempty"`
	Mounts       []Mount       `json:"mounts,omitempty"`
	IP           string        `json:"ip,omitempty"`     // guest address to dial for forward/udp
	Stream       uint32        `json:"stream,omitempty"` // the stream a TypeCancel is about
	Engine       *EngineConfig `json:"engine,omitempty"` // TypeEngineConfig (engine.go)
	// ClockAdjustNanos is what TypeClockAdjust adds to the guest clock (idle.go).
	ClockAdjustNanos int64 `json:"clockAdjustNanos,omitempty"`
}

// TypeCancel tears down stream Request.Stream of the same session on the agent's side:
// its engine connection or forwarded socket is closed and the stream ends. The host sends
// it when its own side of a stream is gone (a docker client killed mid-stream) while the
// agent may still have data to send, which a yamux FIN alone cannot stop. The answer comes
// once the stream was found and cancelled, or says it was not found.
const TypeCancel = "cancel"

// Response answers a Request. A non-empty Error ends the stream.
type Response struct {
	Error  string        `json:"error,omitempty"`
	Info   *Info         `json:"info,omitempty"`
	Mounts []MountResult `json:"mounts,omitempty"`
	// Activity answers TypeActivityCheck (idle.go).
	Activity *Activity    `json:"activity,omitempty"`
	Clock    *ClockResult `json:"clock,omitempty"` // TypeClockRead, TypeClockAdjust (idle.go)
}

// Info describes the guest.
type Info struct {
	ProtocolVersion int    `json:"protocolVersion"`
	AgentVersion    string `json:"agentVersion"`
	Kernel          string `json:"kernel"`
	Arch            string `json:"arch"`
	// KernelBoot is the guest uptime at which the agent started as /init: the kernel's own
	// share of boot time.
	KernelBoot    time.Duration `json:"kernelBoot"`
	Uptime        time.Duration `json:"uptime"`
	Engine        EngineState   `json:"engine"`
	EngineVersion string        `json:"engineVersion,omitempty"`
	IP            string        `json:"ip,omitempty"`
	DataDisk      DiskUsage     `json:"dataDisk"`

	// The engine stack's versions as the running dockerd reports them in GET /version (what
	// `docker version` prints as Server: API version, containerd, runc, docker-init), with
	// `containerd --version` / `runc --version` standing in for a component dockerd leaves
	// out. Empty until the engine first answers. Additions within Version 1: an older agent
	// leaves them out.
	EngineAPIVersion  string `json:"engineAPIVersion,omitempty"`
	ContainerdVersion string `json:"containerdVersion,omitempty"`
	RuncVersion       string `json:"runcVersion,omitempty"`
	InitVersion       string `json:"initVersion,omitempty"` // docker-init (tini)
	// OS is the guest image's distribution, /etc/os-release's PRETTY_NAME
	// ("Debian GNU/Linux 13 (trixie)").
	OS string `json:"os,omitempty"`
}

// DiskUsage of the data disk in bytes.
type DiskUsage struct {
	Total uint64 `json:"total"`
	Used  uint64 `json:"used"`
}

// TypeDisk is a stream on which the agent writes the data disk's DiskUsage as one JSON line
// now and whenever it changed by at least 1% of the disk or crossed DiskNearlyFull. It is
// an addition within Version 1: an older agent answers it with an unknown-type error.
const TypeDisk = "disk"

// DiskNearlyFull is the share of the data disk above which it counts as nearly full: the
// agent reports a crossing at once and the tray warns.
const DiskNearlyFull = 0.90

// NearlyFull reports whether more than DiskNearlyFull of the disk is used.
func (u DiskUsage) NearlyFull() bool {
	// In floating point: the integer products overflow for the largest values.
	return u.Total > 0 && float64(u.Used) > DiskNearlyFull*float64(u.Total)
}

// EngineState is the Docker engine's state as the agent sees it.
type EngineState string

const (
	EngineStarting EngineState = "starting"
	EngineRunning  EngineState = "running"
	EngineStopped  EngineState = "stopped"
	EngineFailed   EngineState = "failed"
)

// Event is pushed on an events stream.
type Event struct {
	Time    time.Time   `json:"time"`
	Engine  EngineState `json:"engine,omitempty"`
	Message string      `json:"message,omitempty"`
}

// ExecRequest starts a process in the guest.
type ExecRequest struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
	Rows uint16   `json:"rows,omitempty"`
	Cols uint16   `json:"cols,omitempty"`
}

// Exec frames: a 1-byte kind, a 4-byte big-endian length, the payload.
const (
	FrameStdin      byte = 0 // host → guest
	FrameStdout     byte = 1 // guest → host (with a TTY, all output)
	FrameStderr     byte = 2 // guest → host
	FrameResize     byte = 3 // host → guest: rows, cols as two big-endian uint16
	FrameExit       byte = 4 // guest → host: exit code as big-endian int32; last frame
	FrameStdinClose byte = 5 // host → guest: no more stdin
)

// Datagram frames: what a udp stream carries, in the framing of exec frames. A udp stream
// is no exec session, so its kinds have names of their own; their values are the ones udp
// streams have used since protocol 2, so the wire is unchanged.
const (
	FrameDatagramToGuest   byte = 0 // host → guest: one datagram for the guest port
	FrameDatagramFromGuest byte = 1 // guest → host: one datagram the guest port sent back
)

// MaxFrame bounds a frame's payload so a corrupt stream cannot make us allocate wildly.
const MaxFrame = 1 << 20

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes exceeds %d", len(payload), MaxFrame)
	}
	buf := make([]byte, 5+len(payload))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	copy(buf[5:], payload)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (kind byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds %d", n, MaxFrame)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// ResizePayload encodes a window size.
func ResizePayload(rows, cols uint16) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, rows)
	binary.BigEndian.PutUint16(b[2:], cols)
	return b
}

// ParseResize decodes a window size.
func ParseResize(b []byte) (rows, cols uint16, err error) {
	if len(b) != 4 {
		return 0, 0, errors.New("bad resize frame")
	}
	return binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:]), nil
}

// ExitPayload encodes an exit code.
func ExitPayload(code int) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(int32(code)))
	return b
}

// ParseExit decodes an exit code.
func ParseExit(b []byte) (int, error) {
	if len(b) != 4 {
		return 0, errors.New("bad exit frame")
	}
	return int(int32(binary.BigEndian.Uint32(b))), nil
}

// WriteJSONLine writes v as one line.
func WriteJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// maxHeader bounds a stream's first line (a Request or a Response).
const maxHeader = 1 << 20

// MaxLine bounds one JSON line of an update stream (a port list, a notify batch). It is far
// above what either side sends (a port list of 10,000 published ports is about 1 MiB); a
// longer line is skipped, never the end of the stream.
const MaxLine = 16 << 20

// ReadJSONLine reads one JSON line byte by byte so that nothing past the newline is
// consumed: the rest of the stream belongs to the payload.
func ReadJSONLine(r io.Reader, v any) error {
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return err
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > maxHeader {
			return errors.New("header line too long")
		}
	}
	return json.Unmarshal(line, v)
}

// ReadLines calls fn with each line read from r (without its newline) until r ends; the
// slice is only valid during the call. A line longer than MaxLine is skipped and reported to
// fn as ErrLineTooLong, and reading goes on. It returns nil at EOF.
func ReadLines(r io.Reader, fn func(line []byte, err error)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	tooLong := false
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if !tooLong && len(line)+len(frag)-1 > MaxLine {
				tooLong = true
			}
			if tooLong {
				fn(nil, ErrLineTooLong)
			} else if len(line) == 0 {
				fn(frag[:len(frag)-1], nil)
			} else {
				line = append(line, frag[:len(frag)-1]...)
				fn(line, nil)
			}
			line, tooLong = line[:0], false
		case errors.Is(err, bufio.ErrBufferFull):
			if !tooLong && len(line)+len(frag) > MaxLine {
				tooLong, line = true, nil
			}
			if !tooLong {
				line = append(line, frag...)
			}
		default:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// ErrLineTooLong reports a line over MaxLine.
var ErrLineTooLong = fmt.Errorf("line longer than %d bytes skipped", MaxLine)

// StreamWindow is the most a stream buffers on the receiving side before its sender waits:
// what one slow client can pin in memory (200 stalled `logs -f` hold at most 200 MiB, where
// 16 MiB windows let them hold 3.2 GiB; a client that left is torn down at once). Measured
// under TCG, builds with 1 MiB and 16 MiB windows back to back (`BenchmarkPorts`,
// `BenchmarkDockerSocket`): no difference beyond the runs' own spread (docs/reliability.md,
// row 10); the emulated CPU, not the window, limits a stream here.
const StreamWindow = 1 << 20

// YamuxConfig is used by both ends. Streams carry docker attach sessions and `logs -f`
// that sit idle for hours and half-closed `run -i` pipes, so no timeout may cut an idle or
// half-closed stream.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.MaxStreamWindowSize = StreamWindow
	c.StreamCloseTimeout = 0 // 0 disables the reset of half-closed streams
	// A session starts only after the channel handshake, so the agent exists; the host
	// pings it itself (host/daemon) to notice an agent that restarted or hangs. yamux's own
	// keepalive would also end sessions of a VM that is merely paused.
	c.StreamOpenTimeout = 0
	c.EnableKeepAlive = false
	c.ConnectionWriteTimeout = 30 * time.Second
	c.LogOutput = io.Discard
	return c
}

// Port forwarding (see docs/agent-protocol.md).
const (
	TypePorts   = "ports"   // the agent writes the full []Port list as one JSON line on every change
	TypeForward = "forward" // raw TCP byte pipe to Request.Port in the guest (half-close kept)
	TypeUDP     = "udp"     // datagram frames (FrameDatagram*) to and from Request.Port
)

// Port is one port the guest wants on the host.
type Port struct {
	Proto string `json:"proto"` // "tcp" or "udp"
	// GuestIP is the guest address the port is published on or listens on ("0.0.0.0",
	// "::", "127.0.0.1", ...): the agent dials it for a forward (a wildcard through
	// loopback), and the host binds the matching family. Its wire name stays "hostIP" (the
	// name it had in protocol 2, when it was taken from Docker's HostIp) until the next
	// Version bump.
	GuestIP   string `json:"hostIP"`
	Port      int    `json:"port"`                // the port on the host, and in the guest
	Container string `json:"container,omitempty"` // container name; empty for a plain listener
	Source    string `json:"source"`              // a PortSource* value
}

// Port.Source values.
const (
	PortSourceContainer = "container" // a published container port
	PortSourceListener  = "listener"  // a guest listener (portListeners)
	PortSourceRegistry  = "registry"  // the local registry's API: hostd's own forward
)

// Key identifies a forward.
func (p Port) Key() string { return fmt.Sprintf("%s/%s/%d", p.Proto, p.GuestIP, p.Port) }

// Shared directories (see docs/file-sharing.md).
const (
	TypeMount  = "mount"  // mount Request.Mounts; the answer has one MountResult each
	TypeNotify = "notify" // the host writes []NotifyEvent JSON lines; the agent replays them
)

// Mount is a host share to mount in the guest at the same path.
type Mount struct {
	Tag      string `json:"tag"`
	Path     string `json:"path"`
	FSType   string `json:"fstype"` // "virtiofs" or "9p"
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// MountResult reports one mount.
type MountResult struct {
	Path  string `json:"path"`
	Error string `json:"error,omitempty"`
}

// NotifyEvent is a host change for the agent to make visible to guest inotify watchers.
type NotifyEvent struct {
	Path string `json:"path"`
	Op   string `json:"op"` // "write", "create", "remove", "rename"
}
