package proto

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// HalfCloser is a byte stream that can close its write side alone.
type HalfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// HalfStream adapts a yamux stream: yamux's Close sends FIN yet keeps the read side open,
// which is exactly a half-close. Full teardown happens when both sides have closed.
type HalfStream struct {
	*yamux.Stream
	// OnAbort, when set, runs once when a Pipe tears the stream down because the other side
	// is gone: the host tells the agent to drop its end (TypeCancel), which yamux itself
	// cannot do while the peer still has data to send.
	OnAbort func()
}

// CloseWrite sends FIN.
func (h HalfStream) CloseWrite() error { return h.Stream.Close() }

// Abort ends the stream at once: blocked reads and writes return, FIN is sent, and the
// OnAbort hook tells the peer to drop its end.
func (h HalfStream) Abort() {
	h.Stream.SetDeadline(time.Now())
	h.Stream.Close()
	if h.OnAbort != nil {
		h.OnAbort()
	}
}

// abort tears c down both ways: a HalfStream by Abort, anything else by Close (a socket's
// Close ends both directions and unblocks its reader and writer).
func abort(c HalfCloser) {
	if a, ok := c.(interface{ Abort() }); ok {
		a.Abort()
		return
	}
	c.Close()
}

// Pipe copies both ways between a and b until both directions are done or ctx ends.
// When one side's input ends cleanly, the other side's output is half-closed, so a client
// that closes stdin still receives every byte of the reply; there is no idle timeout. When a
// copy fails instead (a peer reset the connection, or a write found the reader gone, e.g. a
// docker client killed during `logs -f`), nothing more can be delivered either way: both
// sides are torn down at once, so no stream, engine connection or buffer outlives it.
func Pipe(ctx context.Context, a, b HalfCloser) error {
	var once sync.Once
	teardown := func() { once.Do(func() { abort(a); abort(b) }) }
	stop := context.AfterFunc(ctx, teardown)
	defer stop()
	errc := make(chan error, 2)
	var watch sync.WaitGroup
	var finished atomic.Int32
	cp := func(dst, src HalfCloser) {
		_, err := io.Copy(dst, src)
		finished.Add(1)
		if err != nil {
			teardown()
		} else {
			// src half-closed. If it is a socket whose peer later goes away entirely
			// while the other direction still runs, tear down: that direction may have
			// nothing to write for hours, and only a write would notice otherwise. (Our
			// own CloseWrite at the normal end also reads as a hangup: then both
			// directions are finished and nothing is torn down.)
			watch.Add(1)
			go func() {
				defer watch.Done()
				if waitHangup(src) && finished.Load() < 2 {
					teardown()
				}
			}()
			dst.CloseWrite()
		}
		errc <- err
	}
	go cp(a, b)
	go cp(b, a)
	err := errors.Join(<-errc, <-errc)
	a.Close()
	b.Close()
	watch.Wait()
	return err
}
