package daemon

// Giving memory back after a burst. Hundreds of docker clients (`logs -f`, `exec -i`)
// hold stream buffers and goroutine stacks; once they are gone the Go runtime keeps what
// they used for reuse and returns it to the OS only after a collection, which an idle
// hostd does not run for two minutes. hostd looks every memTrimEvery: when a burst of
// streams ended (its goroutine count fell by memTrimDrop) or more than memTrimSlack of the
// heap is free but still resident, it collects and returns the free memory at once
// (debug.FreeOSMemory), so its RSS follows its clients back down within seconds.

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

const (
	memTrimEvery = 10 * time.Second
	memTrimDrop  = 64      // goroutines: about 20 streams gone
	memTrimSlack = 4 << 20 // free heap the runtime may keep resident
)

// memTrimmer decides, one look at a time, whether to return memory now.
type memTrimmer struct {
	drop       int
	slack      uint64
	goroutines int // at the last look
}

func (m *memTrimmer) look(goroutines int, freeResident uint64) bool {
	trim := goroutines <= m.goroutines-m.drop || freeResident > m.slack
	m.goroutines = goroutines
	return trim
}

// heapFreeResident is the free heap the runtime has not returned to the OS yet.
func heapFreeResident() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// trimMemory returns memory to the OS after bursts until ctx ends.
func (d *Daemon) trimMemory(ctx context.Context) {
	m := &memTrimmer{drop: memTrimDrop, slack: memTrimSlack, goroutines: runtime.NumGoroutine()}
	t := time.NewTicker(memTrimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if m.look(runtime.NumGoroutine(), heapFreeResident()) {
				debug.FreeOSMemory()
			}
		}
	}
}
