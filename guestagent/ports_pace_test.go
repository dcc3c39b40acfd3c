package guestagent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestListenerScanPacing: the listener scan runs once a second (scanFast) for a while after
// it starts or finds a change, slows down (scanSlow) when nothing changes, and Kick (an
// exec) brings it back at once.
func TestListenerScanPacing(t *testing.T) {
	oFast, oSlow, oBurst := scanFast, scanSlow, scanBurst
	scanFast, scanSlow, scanBurst = 10*time.Millisecond, time.Hour, 200*time.Millisecond
	t.Cleanup(func() { scanFast, scanSlow, scanBurst = oFast, oSlow, oBurst })

	dir := t.TempDir()
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	listen := func(lines string) {
		if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(header+lines), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	listen("")
	w := &PortWatcher{DockerSocket: filepath.Join(dir, "no-engine.sock"), Listeners: ListenersPublic, ProcNet: dir}
	ch, cancel := w.Subscribe()
	defer cancel()
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { stop(); <-done }()

	has := func(port int, within time.Duration) bool {
		deadline := time.After(within)
		for {
			select {
			case ports := <-ch:
				for _, p := range ports {
					if p.Port == port {
						return true
					}
				}
			case <-deadline:
				return false
			}
		}
	}
	// Within the first burst: found at the fast pace.
	listen("   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n")
	if !has(8080, time.Second) {
		t.Fatal("a listener during the fast phase was not found within 1 s")
	}
	// Quiet for longer than the burst: the scan slows down and a new listener waits.
	time.Sleep(3 * scanBurst)
	listen("   0: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n")
	if has(8081, 5*scanBurst) {
		t.Fatal("the scan did not slow down after a quiet burst")
	}
	// A kick scans now.
	w.Kick()
	if !has(8081, time.Second) {
		t.Fatal("a kicked scan did not find the new listener within 1 s")
	}
}

// TestListenerScanPaceWhileNapping: while the engine naps, scans come every scanNap, even
// within a burst; awake, the burst and slow paces apply.
func TestListenerScanPaceWhileNapping(t *testing.T) {
	napping := false
	w := &PortWatcher{Napping: func() bool { return napping }}
	now := time.Now()
	burst, quiet := now.Add(time.Minute), now.Add(-time.Second)
	if got := w.scanPace(now, burst); got != scanFast {
		t.Errorf("awake, in a burst: %s, want %s", got, scanFast)
	}
	if got := w.scanPace(now, quiet); got != scanSlow {
		t.Errorf("awake, quiet: %s, want %s", got, scanSlow)
	}
	napping = true
	for _, until := range []time.Time{burst, quiet} {
		if got := w.scanPace(now, until); got != scanNap {
			t.Errorf("napping: %s, want %s", got, scanNap)
		}
	}
	if got := (&PortWatcher{}).scanPace(now, quiet); got != scanSlow {
		t.Errorf("no nap: %s, want %s", got, scanSlow)
	}
}
