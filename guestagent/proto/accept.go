package proto

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Accept backoff bounds: a failing Accept (EMFILE when the process ran out of file
// descriptors, ECONNABORTED, ENOBUFS) is retried after a pause that doubles up to the max,
// so one bad moment never ends a listener that is still open.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// AcceptLoop hands each connection accepted on ln to handle, in its own goroutine, until
// ln is closed or ctx ends (which closes ln). Errors other than a closed listener are
// logged and retried with backoff.
func AcceptLoop(ctx context.Context, ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	backoff := time.Duration(0)
	for {
		c, err := ln.Accept()
		if err == nil {
			backoff = 0
			go handle(c)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
		log.Warn("accept failed; retrying", "addr", ln.Addr(), "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
