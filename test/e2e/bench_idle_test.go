//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent"
	"github.com/berth-dev/berth/host/api"
)

// idleWindow is how long each idle CPU figure is measured.
const idleWindow = 60 * time.Second

// BenchmarkIdle measures what issue 16 asks of an idle instance, on one VM:
//   - resume-to-first-answer: `docker version` on a paused VM against an awake one
//     (medians of 5; the difference is what a resume adds);
//   - hostd's and the VM process's CPU over idleWindow, awake with no container and no
//     client (automatic pausing off), against a bare VM of the same kernel and initramfs
//     idling under the same accelerator (booted first, with berth.bare=idle: its PID 1
//     only waits), and the VM's while paused. Goals: hostd at most 0.1 % of one core, the
//     VM at most 1.2x the bare one. A second bare VM (berth.bare=idle-tuned) runs the
//     kernel as berth's boot tunes it (quietSysctls): against it, the ratio is what the
//     guest's services alone add;
//   - the VM process's RSS before, at the peak of and 30 s after a container that fills
//     1 GiB of tmpfs and exits.
//
// The instance shares one empty directory instead of the home directory: the file change
// notifications that a busy home directory sends (a build writing to ~/.cache) are the
// host's activity, not the idle cost, and on a shared build machine they swamp it.
func BenchmarkIdle(b *testing.B) {
	berthBin(b)
	bare := bareIdleCPU(b, idleWindow, guestagent.BareIdle)
	bareTuned := bareIdleCPU(b, idleWindow, guestagent.BareIdleTuned)

	e := newEnv(b)
	const name = "default" // the harness's docker commands use its context, "berth"
	pid := startQuietInstance(b, e, name)
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

	// Let the start's and the resumes' work settle, and the engine nap: its daemons stop
	// 30 s after the last client (guestagent.EngineNap), as they do on any idle instance.
	time.Sleep(45 * time.Second)
	idle := cpuShares(b, idleWindow, pid, hostd)
	vmAwake, hostdIdle := idle[0], idle[1]
	e.mustBerth("pause", name)
	vmPaused := cpuShare(b, pid, 30*time.Second)
	e.mustBerth("resume", name)
	b.Logf("CPU, %% of one core: VM awake idle %.2f (bare VM idle %.2f: %.2fx, goal <= 1.2x; tuned bare VM %.2f: %.2fx), hostd idle %.3f (goal <= 0.1), VM paused %.3f",
		vmAwake*100, bare*100, vmAwake/bare, bareTuned*100, vmAwake/bareTuned, hostdIdle*100, vmPaused*100)

	before, peak := touchGiB(b, e, pid)
	time.Sleep(30 * time.Second)
	after := rssBytes(b, pid)
	b.Logf("VM RSS: before %d MiB, peak %d MiB, 30 s after %d MiB", before>>20, peak>>20, after>>20)

	b.ReportMetric(float64(awake.Microseconds())/1000, "docker-version-awake-ms")
	b.ReportMetric(float64(resumed.Microseconds())/1000, "docker-version-paused-ms")
	b.ReportMetric(float64((resumed-awake).Microseconds())/1000, "resume-adds-ms")
	b.ReportMetric(hostdIdle*100, "hostd-idle-%core")
	b.ReportMetric(vmAwake*100, "vm-idle-%core")
	b.ReportMetric(bare*100, "bare-vm-idle-%core")
	b.ReportMetric(vmAwake/bare, "vm-idle/bare")
	b.ReportMetric(bareTuned*100, "bare-tuned-vm-idle-%core")
	b.ReportMetric(vmAwake/bareTuned, "vm-idle/bare-tuned")
	b.ReportMetric(vmPaused*100, "vm-paused-%core")
	b.ReportMetric(float64(before>>20), "rss-before-MiB")
	b.ReportMetric(float64(peak>>20), "rss-peak-MiB")
	b.ReportMetric(float64(after>>20), "rss-after30s-MiB")
}

// startQuietInstance starts instance name with automatic pausing off and one empty
// directory as its only share, and returns its QEMU process id.
func startQuietInstance(b *testing.B, e *env, name string) int {
	b.Helper()
	dir := filepath.Join(e.home, name)
	quiet := filepath.Join(e.root, "quiet")
	for _, d := range []string{dir, quiet} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	cfg := fmt.Sprintf("idle:\n  pauseAfter: 0s\nshares:\n  - path: %s\n", quiet)
	if err := os.WriteFile(filepath.Join(dir, "berth.yaml"), []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	e.mustBerth("start", name)
	return qemuPID(b, dir)
}

// bareIdleCPU boots the guest kernel and initramfs with berth.bare=mode (guestagent.BareIdle:
// PID 1 mounts /proc and then only waits; BareIdleTuned: it sets quietSysctls first) on
// the accelerator and VM size an instance gets, lets it settle and returns its QEMU
// process's CPU share over d. The VM is killed afterwards.
func bareIdleCPU(b *testing.B, d time.Duration, mode string) float64 {
	bare := bareVM(b, "bare-"+mode, "loglevel=5 panic=-1 berth.bare="+mode)
	cmd := exec.Command(bare.bin, bare.args...)
	var out bytes.Buffer // read only once Wait returned
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatalf("bare idle VM: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	}()
	gone := func() {
		select {
		case err := <-exited:
			console, _ := os.ReadFile(bare.console)
			b.Fatalf("the bare idle VM exited (%v): an image whose agent has no berth.bare=%s powers off; rebuild it (make image)\n%s\n%s",
				err, mode, out.String(), console)
		default:
		}
	}
	time.Sleep(30 * time.Second) // boot and settle (a bare boot takes a few seconds)
	gone()
	share := cpuShare(b, cmd.Process.Pid, d)
	gone()
	b.Logf("bare idle VM (%s, berth.bare=%s): %.2f %% of one core", bare.desc, mode, share*100)
	return share
}

// cpuShares measures the CPU share of several processes over the same d: /proc stat for
// the first (QEMU, whose worker threads come and go), the per-thread schedstat sum for
// the others (hostd: Go keeps its threads; finer than /proc stat's 10 ms ticks).
func cpuShares(b *testing.B, d time.Duration, vmPID int, others ...int) []float64 {
	b.Helper()
	vm0 := processCPU(b, vmPID)
	var o0 []time.Duration
	for _, p := range others {
		c, err := procCPU(p)
		if err != nil {
			b.Fatal(err)
		}
		o0 = append(o0, c)
	}
	start := time.Now()
	time.Sleep(d)
	el := time.Since(start)
	res := []float64{float64(processCPU(b, vmPID)-vm0) / float64(el)}
	for i, p := range others {
		c, err := procCPU(p)
		if err != nil {
			b.Fatal(err)
		}
		res = append(res, float64(c-o0[i])/float64(el))
		b.Logf("pid %d over %s: %s of CPU (thread schedstat sum)", p, el.Round(time.Second), c-o0[i])
	}
	b.Logf("VM pid %d over %s: %.2f %% of one core (/proc stat)", vmPID, el.Round(time.Second), res[0]*100)
	return res
}
