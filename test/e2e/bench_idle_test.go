//go:build e2e

package e2e

import (
	"sort"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
)

// BenchmarkIdle measures what issue 16 asks of an idle instance, on one VM:
//   - resume-to-first-answer: `docker version` on a paused VM against an awake one
//     (medians of 5; the difference is what a resume adds);
//   - hostd's and the VM process's CPU over 30 s, awake with no container and no client
//     (automatic pausing off), and the VM's while paused;
//   - the VM process's RSS before, at the peak of and 30 s after a container that fills
//     1 GiB of tmpfs and exits.
func BenchmarkIdle(b *testing.B) {
	e := newEnv(b)
	const name = "default" // the harness's docker commands use its context, "berth"
	pid := startIdleInstance(b, e, name, 0)
	e.busyboxImage("bb:idle")
	hostd := e.status(name).PID

	median := func(f func() time.Duration) time.Duration {
		var ds []time.Duration
		for range 5 {
			ds = append(ds, f())
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	version := func() time.Duration {
		t0 := time.Now()
		if out, err := e.docker_(nil, "version"); err != nil {
			b.Fatalf("docker version: %v\n%s", err, out)
		}
		return time.Since(t0)
	}
	awake := median(version)
	resumed := median(func() time.Duration {
		e.mustBerth("pause", name)
		if st := e.status(name); st.State != api.StatePaused {
			b.Fatalf("after berth pause: %s", st.State)
		}
		return version()
	})
	st := e.status(name)
	b.Logf("docker version: awake %s, on a paused VM %s; hostd's last resume took %s", awake, resumed, st.Idle.LastResume)

	time.Sleep(10 * time.Second) // let the start's and the resumes' work settle
	vmAwake := cpuShare(b, pid, 30*time.Second)
	hostdIdle := cpuShare(b, hostd, 30*time.Second)
	e.mustBerth("pause", name)
	vmPaused := cpuShare(b, pid, 30*time.Second)
	e.mustBerth("resume", name)
	b.Logf("CPU, %% of one core: VM awake idle %.2f, hostd idle %.3f, VM paused %.3f", vmAwake*100, hostdIdle*100, vmPaused*100)

	before, peak := touchGiB(b, e, pid)
	time.Sleep(30 * time.Second)
	after := rssBytes(b, pid)
	b.Logf("VM RSS: before %d MiB, peak %d MiB, 30 s after %d MiB", before>>20, peak>>20, after>>20)

	b.ReportMetric(float64(awake.Microseconds())/1000, "docker-version-awake-ms")
	b.ReportMetric(float64(resumed.Microseconds())/1000, "docker-version-paused-ms")
	b.ReportMetric(float64((resumed-awake).Microseconds())/1000, "resume-adds-ms")
	b.ReportMetric(hostdIdle*100, "hostd-idle-%core")
	b.ReportMetric(vmAwake*100, "vm-idle-%core")
	b.ReportMetric(vmPaused*100, "vm-paused-%core")
	b.ReportMetric(float64(before>>20), "rss-before-MiB")
	b.ReportMetric(float64(peak>>20), "rss-peak-MiB")
	b.ReportMetric(float64(after>>20), "rss-after30s-MiB")
}
