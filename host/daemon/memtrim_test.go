package daemon

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestMemTrimmerLooks(t *testing.T) {
	m := &memTrimmer{drop: 64, slack: 4 << 20, goroutines: 30}
	for _, step := range []struct {
		goroutines int
		free       uint64
		want       bool
		why        string
	}{
		{30, 1 << 20, false, "idle"},
		{800, 1 << 20, false, "a burst starts"},
		{790, 2 << 20, false, "a few leave"},
		{400, 2 << 20, true, "half of the burst ended"},
		{34, 1 << 20, true, "the rest ended"},
		{34, 1 << 20, false, "idle again"},
		{36, 64 << 20, true, "a collection left 64 MiB free and resident"},
	} {
		if got := m.look(step.goroutines, step.free); got != step.want {
			t.Errorf("%s: look(%d, %d) = %v, want %v", step.why, step.goroutines, step.free, got, step.want)
		}
	}
}

// heapFreeResident sees memory the program freed and the runtime kept, and a trim
// returns it.
func TestHeapFreeResidentAndTrim(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but ours
	buf := make([][]byte, 64)
	for i := range buf {
		buf[i] = make([]byte, 1<<20)
		buf[i][0] = 1
	}
	runtime.KeepAlive(buf)
	runtime.GC() // freed, but kept resident for reuse
	if free := heapFreeResident(); free < 32<<20 {
		t.Errorf("only %d bytes of free heap resident after freeing 64 MiB", free)
	}
	debug.FreeOSMemory()
	if free := heapFreeResident(); free > memTrimSlack {
		t.Errorf("%d bytes of free heap still resident after a trim", free)
	}
}
