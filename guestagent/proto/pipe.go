package proto

import (
	"errors"
	"io"

	"github.com/hashicorp/yamux"
)

// HalfCloser is a byte stream that can close its write side alone.
type HalfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// HalfStream adapts a yamux stream: yamux's Close sends FIN yet keeps the read side open,
// which is exactly a half-close. Full teardown happens when both sides have closed.
type HalfStream struct{ *yamux.Stream }

// CloseWrite sends FIN.
func (h HalfStream) CloseWrite() error { return h.Stream.Close() }

// Pipe copies both ways between a and b. When one side's input ends, the other side's
// output is half-closed, so a client that closes stdin still receives every byte of the
// reply. It returns when both directions are done, with no idle timeout.
func Pipe(a, b HalfCloser) error {
	errc := make(chan error, 2)
	cp := func(dst, src HalfCloser) {
		_, err := io.Copy(dst, src)
		dst.CloseWrite()
		errc <- err
	}
	go cp(a, b)
	go cp(b, a)
	err := errors.Join(<-errc, <-errc)
	a.Close()
	b.Close()
	return err
}
