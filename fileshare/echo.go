package fileshare

import (
	"path/filepath"
	"sync"
	"time"
)

// EchoFilter breaks the replay loop. The guest replays a host change by setting the
// file's mtime alone, which is what makes its kernel report IN_MODIFY; the share server
// applies that to the host file, and the host kernel reports IN_MODIFY too. Each replay
// therefore comes back exactly once: the filter expects that echo and drops it. An echo
// that never comes (the file vanished) expires, so a later real change is never eaten.
type EchoFilter struct {
	ttl     time.Duration
	mu      sync.Mutex
	pending map[string]time.Time
	now     func() time.Time
}

// NewEchoFilter returns a filter whose expectations expire after ttl.
func NewEchoFilter(ttl time.Duration) *EchoFilter {
	return &EchoFilter{ttl: ttl, pending: map[string]time.Time{}, now: time.Now}
}

// Filter drops the echoes of earlier replays from evs, and records the echoes the
// remaining events will cause once replayed.
func (f *EchoFilter) Filter(evs []Event) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	for p, exp := range f.pending {
		if now.After(exp) {
			delete(f.pending, p)
		}
	}
	out := evs[:0:0]
	for _, e := range evs {
		if _, ok := f.pending[e.Path]; ok && e.Op == "write" {
			delete(f.pending, e.Path)
			continue
		}
		out = append(out, e)
	}
	for _, e := range out {
		f.pending[ReplayTarget(e)] = now.Add(f.ttl)
	}
	return out
}

// ReplayTarget is the path the guest touches to replay e: the file itself, or its
// directory when the file is gone.
func ReplayTarget(e Event) string {
	if e.Op == "remove" || e.Op == "rename" {
		return filepath.Dir(e.Path)
	}
	return e.Path
}
