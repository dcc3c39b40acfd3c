package guestagent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

func TestDiskChanged(t *testing.T) {
	const gib = 1 << 30
	total := uint64(100 * gib)
	at := func(used uint64) proto.DiskUsage { return proto.DiskUsage{Total: total, Used: used} }
	for _, c := range []struct {
		name      string
		prev, cur proto.DiskUsage
		want      bool
	}{
		{"first reading", proto.DiskUsage{}, at(10 * gib), true},
		{"unreadable", at(10 * gib), proto.DiskUsage{}, false},
		{"nothing sent and unreadable", proto.DiskUsage{}, proto.DiskUsage{}, false},
		{"unchanged", at(10 * gib), at(10 * gib), false},
		{"grew by less than 1%", at(10 * gib), at(10*gib + gib - 1), false},
		{"grew by 1%", at(10 * gib), at(11 * gib), true},
		{"shrank by 1%", at(11 * gib), at(10 * gib), true},
		{"small steps add up against the last value sent", at(10 * gib), at(11*gib + 1), true},
		{"crossed 90% upwards by a hair", at(90 * gib), at(90*gib + 1), true},
		{"crossed 90% downwards by a hair", at(90*gib + 1), at(90 * gib), true},
		{"moved a little above 90%", at(91 * gib), at(91*gib + gib/2), false},
		{"disk grown", at(10 * gib), proto.DiskUsage{Total: 200 * gib, Used: 10 * gib}, true},
	} {
		if got := diskChanged(c.prev, c.cur); got != c.want {
			t.Errorf("%s: diskChanged(%+v, %+v) = %v, want %v", c.name, c.prev, c.cur, got, c.want)
		}
	}
}

func TestWatchDisk(t *testing.T) {
	var used atomic.Uint64
	used.Store(10)
	var reads atomic.Int32
	usage := func() proto.DiskUsage {
		reads.Add(1)
		return proto.DiskUsage{Total: 100, Used: used.Load()}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var asleep atomic.Pointer[chan struct{}]
	ch := watchDisk(ctx, usage, 5*time.Millisecond, func() <-chan struct{} {
		if p := asleep.Load(); p != nil {
			return *p
		}
		return nil
	})
	next := func() proto.DiskUsage {
		t.Helper()
		select {
		case u := <-ch:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update")
		}
		return proto.DiskUsage{}
	}
	if u := next(); u.Used != 10 {
		t.Fatalf("first update %+v, want the current usage", u)
	}
	// Unchanged readings are not sent, however many there are.
	for n := reads.Load(); reads.Load() < n+5; {
		time.Sleep(time.Millisecond)
	}
	select {
	case u := <-ch:
		t.Fatalf("unchanged usage sent: %+v", u)
	default:
	}
	used.Store(95)
	if u := next(); u.Used != 95 {
		t.Fatalf("update %+v, want 95", u)
	}
	used.Store(20)
	if u := next(); u.Used != 20 {
		t.Fatalf("update %+v, want 20", u)
	}
	// While the engine naps the disk is not read at all, and it is read again once it wakes.
	woke := make(chan struct{})
	asleep.Store(&woke)
	n := reads.Load()
	time.Sleep(100 * time.Millisecond) // 20 intervals: a watcher that ignored the nap reads ~20 times
	if got := reads.Load() - n; got > 1 {
		t.Fatalf("%d reads while the engine napped, want at most the one already due", got)
	}
	used.Store(60)
	asleep.Store(nil)
	close(woke)
	if u := next(); u.Used != 60 {
		t.Fatalf("update after the nap %+v, want 60", u)
	}
	cancel()
	time.Sleep(20 * time.Millisecond)
	n = reads.Load()
	time.Sleep(20 * time.Millisecond)
	if reads.Load() != n {
		t.Error("the watcher kept reading after its context ended")
	}
}
