//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// TestDiskUsage fills the data disk from inside the VM while it runs: the status and the
// control API's event stream follow the guest's usage up and down again, not just at boot.
func TestDiskUsage(t *testing.T) {
	e := newEnv(t)
	const name = "disk"
	// The smallest data disk, no shares and no listener forwarding: nothing but the disk.
	writeConfig(t, e, name, "cpus: 2\nmemory: 2\ndisk: 4\nshares: []\nportListeners: none\n")
	e.mustBerth("start", name)

	// Follow the event stream from now on and keep its disk events.
	var mu sync.Mutex
	var events []api.Event
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	client := api.NewClient(filepath.Join(e.home, name, "hostd.sock"))
	go client.Events(ctx, func(ev api.Event) bool {
		if ev.Type == api.EventDisk {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
		return true
	})
	// forget drops the disk events seen so far (the stream starts with a replay of the
	// latest one), so that only what follows an action counts.
	forget := func() {
		mu.Lock()
		events = nil
		mu.Unlock()
	}
	// waitDisk waits (90 s at most: the agent looks every 30 s) until both the status and
	// a disk event show a usage that satisfies ok. It polls the API quietly and checks the
	// CLI's `berth status --json` once at the end.
	waitDisk := func(what string, ok func(api.DiskUsage) bool) api.DiskUsage {
		t.Helper()
		var st api.Status
		start := time.Now()
		for time.Since(start) < 90*time.Second {
			st, _ = client.Status(ctx)
			mu.Lock()
			var seen *api.Event
			for i := range events {
				if events[i].Disk != nil && ok(*events[i].Disk) {
					seen = &events[i]
				}
			}
			mu.Unlock()
			if st.Guest != nil && ok(st.Guest.DataDisk) && seen != nil {
				t.Logf("%s after %s: %+v (event %q)", what, time.Since(start).Round(time.Second), st.Guest.DataDisk, seen.Message)
				if seen.State != api.StateRunning || seen.Message == "" {
					t.Errorf("disk event %+v", *seen)
				}
				if cli := e.status(name); cli.Guest == nil || !ok(cli.Guest.DataDisk) {
					t.Errorf("berth status --json: guest %+v", cli.Guest)
				}
				return st.Guest.DataDisk
			}
			time.Sleep(time.Second)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s: not seen in 90 s; status %+v, disk events %+v", what, st.Guest, events)
		return api.DiskUsage{}
	}

	st := e.status(name)
	if st.Guest == nil || st.Guest.DataDisk.Total == 0 || st.Guest.DataDisk.NearlyFull() {
		t.Fatalf("data disk at boot: %+v", st.Guest)
	}
	boot := st.Guest.DataDisk
	// Fill the disk to 95 %: fallocate reserves the blocks at once without writing them.
	fill := boot.Total/100*95 - boot.Used
	forget()
	e.mustBerth("shell", name, "--", "fallocate", "-l", fmt.Sprint(fill), "/var/lib/berth/fill")
	full := waitDisk("nearly full", func(u api.DiskUsage) bool { return u.NearlyFull() })
	if full.Total != boot.Total {
		t.Errorf("total changed from %d to %d", boot.Total, full.Total)
	}
	e.mustBerth("status", name)

	forget()
	e.mustBerth("shell", name, "--", "rm", "/var/lib/berth/fill")
	waitDisk("cleaned up", func(u api.DiskUsage) bool { return u.Total > 0 && u.Used < full.Used-fill/2 })
}
