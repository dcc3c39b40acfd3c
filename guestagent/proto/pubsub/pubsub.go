// Package pubsub fans values out to subscribers without ever blocking the publisher. Both
// sides of the guest contract use it: the agent for engine and port updates, hostd for its
// event stream.
package pubsub

import "sync"

// Mode says what a subscriber whose buffer is full gets.
type Mode int

const (
	// DropNew: a full subscriber misses the new value (a stalled event reader must not
	// stall the publisher; it catches up from the next state change).
	DropNew Mode = iota
	// KeepLatest: a full subscriber's oldest unread value is replaced by the new one, so
	// it always ends up with the latest state (a port list, a snapshot).
	KeepLatest
)

// Topic is a set of subscribers. The zero value publishes in DropNew mode.
type Topic[T any] struct {
	Mode Mode

	mu   sync.Mutex
	subs map[chan T]struct{}
}

// Subscribe returns a channel of the values published from now on, preceded by initial,
// buffered for buf values beyond those (at least one), and the function that unsubscribes. The channel is
// never closed: readers leave through their own context.
func (t *Topic[T]) Subscribe(buf int, initial ...T) (<-chan T, func()) {
	ch := make(chan T, max(buf+len(initial), 1))
	for _, v := range initial {
		ch <- v
	}
	t.mu.Lock()
	if t.subs == nil {
		t.subs = map[chan T]struct{}{}
	}
	t.subs[ch] = struct{}{}
	t.mu.Unlock()
	return ch, func() {
		t.mu.Lock()
		delete(t.subs, ch)
		t.mu.Unlock()
	}
}

// Publish gives v to every subscriber, never waiting for one.
func (t *Topic[T]) Publish(v T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- v:
			continue
		default:
		}
		if t.Mode == KeepLatest {
			select {
			case <-ch:
			default:
			}
			select {
			case ch <- v:
			default:
			}
		}
	}
}

// Len is the number of subscribers.
func (t *Topic[T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}
