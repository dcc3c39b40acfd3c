//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// BenchmarkShares runs the same file workload in a container on a shared host directory
// and on the VM's own disk, in the same run, and measures how long a host edit takes to
// reach an inotify watcher in a container.
func BenchmarkShares(b *testing.B) {
	e := newEnv(b)
	dir := filepath.Join(e.root, "bench share")
	os.MkdirAll(dir, 0o755)
	writeConfig(b, e, "default", fmt.Sprintf("shares:\n  - path: %q\n", dir))
	e.mustBerth("start")
	e.busyboxImage(image)
	run := func(target string, args ...string) []float64 {
		out := e.mustDocker(append([]string{"run", "--rm", "--privileged"}, append(args, image, "testsrv", "fsbench", target, "256", "2000")...)...)
		var w, r, f float64
		if _, err := fmt.Sscan(strings.TrimSpace(out), &w, &r, &f); err != nil {
			b.Fatalf("fsbench output %q", out)
		}
		return []float64{w, r, f}
	}
	share := run("/w", "-v", dir+":/w")
	disk := run("/data")
	e.mustDocker("run", "-d", "-p", "18400:8000", "-v", dir+":/w", image, "testsrv", "watch", "/w", "8000")
	waitHTTPB(b, "http://127.0.0.1:18400/count")
	var lat []time.Duration
	for i := 0; i < 9; i++ {
		p := filepath.Join(dir, fmt.Sprintf("edit%d.txt", i%3))
		d, _ := nextEvent(b, "http://127.0.0.1:18400", func() { os.WriteFile(p, []byte(fmt.Sprint(i)), 0o644) })
		lat = append(lat, d)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.Logf("share (%s): write %.0f MiB/s, read %.0f MiB/s, %.0f files/s; VM disk: write %.0f, read %.0f, %.0f files/s; host edit → guest event %v",
		e.mustBerth("mounts"), share[0], share[1], share[2], disk[0], disk[1], disk[2], lat)
	b.ReportMetric(share[0]/disk[0], "share/disk-write")
	b.ReportMetric(share[1]/disk[1], "share/disk-read")
	b.ReportMetric(share[2]/disk[2], "share/disk-files")
	b.ReportMetric(share[0], "share-write-MiB/s")
	b.ReportMetric(share[1], "share-read-MiB/s")
	b.ReportMetric(share[2], "share-files/s")
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "edit-to-event-p50-ms")
	e.mustBerth("stop")
}
