package guestagent

import (
	"context"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/berth-dev/berth/guestagent/proto"
)

// diskInterval is how often the data disk's usage is read while a host follows it: one
// statfs and nothing else. While the engine naps nothing writes to the disk, and it is not
// read at all (each look wakes the guest: a statfs is nothing, the wake-up under TCG is not).
const diskInterval = 30 * time.Second

// disk writes the data disk's usage now and whenever it changed enough to tell the host
// (see diskChanged), until the host closes the stream.
func (s *Server) disk(ctx context.Context, st *yamux.Stream) error {
	if err := reply(st, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	usage := func() proto.DiskUsage { return diskUsage(dataMount) }
	return writeUpdates(ctx, st, watchDisk(ctx, usage, diskInterval, s.opts.Nap.Asleep))
}

// watchDisk reads usage now and every interval, and sends each reading that diskChanged
// says the receiver should have, until ctx ends. When asleep returns a channel (the engine
// naps) it waits for that channel to close instead of the next interval.
func watchDisk(ctx context.Context, usage func() proto.DiskUsage, interval time.Duration, asleep func() <-chan struct{}) <-chan proto.DiskUsage {
	ch := make(chan proto.DiskUsage)
	go func() {
		t := time.NewTimer(interval)
		defer t.Stop()
		var sent proto.DiskUsage // nothing yet: the first readable value goes out
		for {
			if cur := usage(); diskChanged(sent, cur) {
				select {
				case ch <- cur:
					sent = cur
				case <-ctx.Done():
					return
				}
			}
			t.Reset(interval)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			if woke := asleep(); woke != nil { // the nap may have begun since the last look
				select {
				case <-woke:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return ch
}

// diskChanged reports whether usage cur should be sent to a host that was last sent prev:
// it moved by at least 1% of the disk, or crossed proto.DiskNearlyFull in either direction.
// A failed reading (zero total) is never sent.
func diskChanged(prev, cur proto.DiskUsage) bool {
	switch {
	case cur.Total == 0:
		return false
	case cur.Total != prev.Total:
		return true // the first reading (or a disk of another size)
	case cur.NearlyFull() != prev.NearlyFull():
		return true
	}
	delta := max(cur.Used, prev.Used) - min(cur.Used, prev.Used)
	return delta*100 >= cur.Total
}
