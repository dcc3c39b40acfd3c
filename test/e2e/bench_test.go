//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/vm"
	"github.com/berth-dev/berth/vm/qemu"
)

// BenchmarkStart measures `berth start` to ready, split by phase, against a bare boot of
// the same kernel and initramfs on the same accelerator in the same run (the agent powers
// off at once when booted with berth.bare=1). Ratios are what to compare across machines.
func BenchmarkStart(b *testing.B) {
	berthBin(b)
	bare := bareBoot(b, 3)
	e := newEnv(b)
	var phases = map[string]time.Duration{}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		e.mustBerth("start")
		total = time.Since(t0)
		st := e.status("default")
		if st.State != api.StateRunning {
			b.Fatalf("state %s: %s", st.State, st.Error)
		}
		for _, p := range st.Phases {
			phases[p.Phase] = p.At
		}
		b.Logf("accelerator %s; phases %v; start command took %s", st.Accel, st.Phases, total)
		e.mustBerth("stop")
	}
	b.ReportMetric(bare.Seconds(), "bare-boot-s")
	b.ReportMetric(phases[api.PhaseKernel].Seconds(), "kernel-s")
	b.ReportMetric(phases[api.PhaseAgent].Seconds(), "agent-up-s")
	b.ReportMetric(phases[api.PhaseEngine].Seconds(), "engine-ready-s")
	b.ReportMetric(phases[api.PhaseSocket].Seconds(), "socket-ready-s")
	b.ReportMetric(total.Seconds(), "start-cmd-s")
	b.ReportMetric(phases[api.PhaseSocket].Seconds()/bare.Seconds(), "ready/bare")
	b.ReportMetric(phases[api.PhaseAgent].Seconds()/bare.Seconds(), "agent/bare")
}

// bareBoot boots the guest kernel and initramfs n times with berth.bare=1 and returns the
// median wall time from launching QEMU to its exit.
func bareBoot(b *testing.B, n int) time.Duration {
	arch := runtime.GOARCH
	dir := filepath.Join(os.Getenv("BERTH_IMAGES"), arch)
	run := b.TempDir()
	cfg := vm.Config{
		Name: "bare", Arch: arch, CPUs: 2, MemoryMiB: 2048,
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		CmdLine:    "quiet panic=-1 berth.bare=1",
		Agent:      vm.AgentChannel{SerialName: "io.berth.agent"},
		ConsoleLog: filepath.Join(run, "console.log"),
		RuntimeDir: run,
	}
	accel, err := vm.ChooseAccel(qemu.ProbeHost(), arch, "auto")
	if err != nil {
		b.Fatal(err)
	}
	args, err := qemu.Args(cfg, accel)
	if err != nil {
		b.Fatal(err)
	}
	bin, _ := qemu.Binary(arch)
	var times []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("bare boot: %v: %s", err, out)
		}
		times = append(times, time.Since(t0))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.Logf("bare boot (%s, %s): %v", arch, accel, times)
	return times[len(times)/2]
}
