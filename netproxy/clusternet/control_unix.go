//go:build darwin || linux

package clusternet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// maxRequest bounds one control request line.
const maxRequest = 4096

// controlTimeout bounds each exchange on the control socket.
const controlTimeout = 10 * time.Second

// Member is what the server needs to know about a member it admits.
type Member struct {
	MAC string
}

// Server answers netd's control socket.
type Server struct {
	Switch *Switch
	Log    *slog.Logger
	// Admit returns the member's settings, or an error when name is not a member of the
	// cluster (it is asked on every attach, so members added later are admitted).
	Admit func(name string) (Member, error)
	// Stop is called on a "stop" request, after the reply is written.
	Stop func()
}

// Serve accepts control connections on ln until ctx ends, then closes ln and waits for
// every connection's goroutine. ln must be a unix stream listener (SCM_RIGHTS).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			// PeerCredListener wraps the conn; unwrap what it embeds.
			if u, ok2 := unwrapUnix(c); ok2 {
				uc = u
			} else {
				c.Close()
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(ctx, uc)
		}()
	}
}

func unwrapUnix(c net.Conn) (*net.UnixConn, bool) {
	type unwrapper interface{ NetConn() net.Conn }
	for range 4 {
		if u, ok := c.(*net.UnixConn); ok {
			return u, true
		}
		w, ok := c.(unwrapper)
		if !ok {
			return nil, false
		}
		c = w.NetConn()
	}
	return nil, false
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlTimeout))
	req, fds, err := readRequest(c)
	defer func() {
		for _, f := range fds {
			f.Close()
		}
	}()
	if err != nil {
		s.Log.Warn("bad control request", "err", err)
		writeReply(c, Reply{Error: err.Error()})
		return
	}
	switch req.Op {
	case "status":
		writeReply(c, Reply{OK: true, PID: os.Getpid(), Members: s.Switch.Links()})
	case "stop":
		writeReply(c, Reply{OK: true, PID: os.Getpid()})
		if s.Stop != nil {
			s.Stop()
		}
	case "attach":
		if len(fds) != 1 {
			writeReply(c, Reply{Error: fmt.Sprintf("attach needs exactly one socket, got %d", len(fds))})
			return
		}
		m, err := s.Admit(req.Member)
		if err != nil {
			s.Log.Warn("attach refused", "member", req.Member, "err", err)
			writeReply(c, Reply{Error: err.Error()})
			return
		}
		f := fds[0]
		fds = nil
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if err := s.Switch.Attach(lctx, req.Member, m.MAC, f); err != nil {
			writeReply(c, Reply{Error: err.Error()})
			return
		}
		if err := writeReply(c, Reply{OK: true, PID: os.Getpid()}); err != nil {
			return
		}
		// The attachment lasts as long as this connection: hostd closing it (or dying)
		// detaches the member; netd stopping closes it.
		c.SetDeadline(time.Time{})
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				break
			}
		}
		s.Switch.Detach(req.Member)
	default:
		writeReply(c, Reply{Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

// readRequest reads one request line and the descriptors sent with it.
func readRequest(c *net.UnixConn) (Request, []*os.File, error) {
	var req Request
	buf := make([]byte, maxRequest)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	var files []*os.File
	if oobn > 0 {
		msgs, perr := syscall.ParseSocketControlMessage(oob[:oobn])
		if perr == nil {
			for _, m := range msgs {
				fds, rerr := syscall.ParseUnixRights(&m)
				if rerr != nil {
					continue
				}
				for _, fd := range fds {
					syscall.CloseOnExec(fd)
					files = append(files, os.NewFile(uintptr(fd), "berth-cluster-link"))
				}
			}
		}
	}
	if err != nil {
		return req, files, err
	}
	line := buf[:n]
	if i := indexNL(line); i >= 0 {
		line = line[:i]
	} else {
		return req, files, errors.New("request is not one line")
	}
	if err := json.Unmarshal(line, &req); err != nil {
		return req, files, fmt.Errorf("invalid request: %w", err)
	}
	return req, files, nil
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func writeReply(c net.Conn, r Reply) error {
	b, _ := json.Marshal(r)
	_, err := c.Write(append(b, '\n'))
	return err
}

// Link is a member's attachment, held by its hostd.
type Link struct {
	c    *net.UnixConn
	done chan struct{}
}

// Done is closed when netd ended the attachment (netd stopped or died).
func (l *Link) Done() <-chan struct{} { return l.done }

// Close detaches the member.
func (l *Link) Close() error {
	err := l.c.Close()
	<-l.done
	return err
}

// Attach hands f (the switch's end of a datagram socketpair) to the netd at sock for
// member. The caller keeps its own f and may close it once Attach returns.
func Attach(ctx context.Context, sock, member string, f *os.File) (*Link, error) {
	c, rep, err := exchange(ctx, sock, Request{Op: "attach", Member: member}, f)
	if err != nil {
		return nil, err
	}
	if !rep.OK {
		c.Close()
		return nil, fmt.Errorf("cluster network refused %s: %s", member, rep.Error)
	}
	c.SetDeadline(time.Time{})
	l := &Link{c: c, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var b [1]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				return
			}
		}
	}()
	return l, nil
}

// Status asks the netd at sock which members are attached.
func Status(ctx context.Context, sock string) (Reply, error) {
	c, rep, err := exchange(ctx, sock, Request{Op: "status"}, nil)
	if err != nil {
		return Reply{}, err
	}
	c.Close()
	if !rep.OK {
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// Stop asks the netd at sock to exit; it returns its pid.
func Stop(ctx context.Context, sock string) (int, error) {
	c, rep, err := exchange(ctx, sock, Request{Op: "stop"}, nil)
	if err != nil {
		return 0, err
	}
	c.Close()
	if !rep.OK {
		return 0, errors.New(rep.Error)
	}
	return rep.PID, nil
}

func exchange(ctx context.Context, sock string, req Request, f *os.File) (*net.UnixConn, Reply, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	nc, err := d.DialContext(dctx, "unix", sock)
	if err != nil {
		return nil, Reply{}, fmt.Errorf("cluster network daemon not reachable at %s: %w", sock, err)
	}
	c := nc.(*net.UnixConn)
	deadline, _ := dctx.Deadline()
	c.SetDeadline(deadline)
	b, _ := json.Marshal(req)
	var oob []byte
	if f != nil {
		oob = syscall.UnixRights(int(f.Fd()))
	}
	if _, _, err := c.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		c.Close()
		return nil, Reply{}, fmt.Errorf("failed to send the request to the cluster network daemon: %w", err)
	}
	line, err := bufio.NewReaderSize(c, maxRequest).ReadSlice('\n')
	if err != nil {
		c.Close()
		return nil, Reply{}, fmt.Errorf("no answer from the cluster network daemon: %w", err)
	}
	var rep Reply
	if err := json.Unmarshal(line, &rep); err != nil {
		c.Close()
		return nil, Reply{}, fmt.Errorf("invalid answer from the cluster network daemon: %w", err)
	}
	return c, rep, nil
}
