package localsock

import (
	"net"
	"sync"
	"time"
)

// WatchHangup calls gone once the client at the other end of c has hung up entirely
// (closed, or died), looking every interval without reading from c, until the returned
// stop is called; stop returns once the watch has ended. A half-close (the client shut
// its writes and waits for the answer, as socat and `nc -N` do) is not a hang-up. For a
// connection whose hang-up cannot be seen this way (TCP, a named pipe) it watches nothing.
//
// It is for the waits before a connection's stream exists (the agent restarting, a paused
// VM resuming, a busy guest answering the open): a client killed meanwhile ends the wait
// at once instead of holding it, and what it holds, until the wait's own timeout.
func WatchHangup(c net.Conn, interval time.Duration, gone func()) (stop func()) {
	if !canWatchHangup(c) {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if hungUp(c) {
					gone()
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		wg.Wait()
	}
}
