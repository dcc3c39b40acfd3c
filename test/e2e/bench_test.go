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
// off at once when booted with berth.bare=1). Each iteration starts a new instance twice:
// the first start formats its data disk (first-*), the second is an ordinary start, the
// one a user waits for every day. Ratios are what to compare across machines.
func BenchmarkStart(b *testing.B) {
	berthBin(b)
	bare := bareBoot(b, 3)
	e := newEnv(b)
	var first, again map[string]time.Duration
	var total time.Duration
	start := func() map[string]time.Duration {
		t0 := time.Now()
		e.mustBerth("start")
		total = time.Since(t0)
		st := e.status("default")
		if st.State != api.StateRunning {
			b.Fatalf("state %s: %s", st.State, st.Error)
		}
		phases := map[string]time.Duration{}
		for _, p := range st.Phases {
			phases[p.Phase] = p.At
		}
		b.Logf("accelerator %s; phases %v; start command took %s", st.Accel, st.Phases, total)
		e.mustBerth("stop")
		return phases
	}
	for i := 0; i < b.N; i++ {
		first = start()
		again = start()
		e.mustBerth("delete", "--data", "--force")
	}
	b.ReportMetric(bare.Seconds(), "bare-boot-s")
	b.ReportMetric(again[api.PhaseKernel].Seconds(), "kernel-s")
	b.ReportMetric(again[api.PhaseAgent].Seconds(), "agent-up-s")
	b.ReportMetric(again[api.PhaseEngine].Seconds(), "engine-ready-s")
	b.ReportMetric(again[api.PhaseSocket].Seconds(), "socket-ready-s")
	b.ReportMetric(total.Seconds(), "start-cmd-s")
	b.ReportMetric(again[api.PhaseSocket].Seconds()/bare.Seconds(), "ready/bare")
	b.ReportMetric(again[api.PhaseAgent].Seconds()/bare.Seconds(), "agent/bare")
	b.ReportMetric(first[api.PhaseSocket].Seconds()/bare.Seconds(), "first-ready/bare")
}

// bareVM is the QEMU command line of a bare VM of the guest kernel and initramfs
// (berth.bare=... on cmdline: the agent as PID 1 does nothing else) on the accelerator and
// VM size an instance gets: the baseline of the start and idle benchmarks.
func bareVM(b *testing.B, name, cmdline string) bareCmd {
	arch := runtime.GOARCH
	dir := filepath.Join(os.Getenv("BERTH_IMAGES"), arch)
	run := b.TempDir()
	cfg := vm.Config{
		Name: name, Arch: arch, CPUs: 2, MemoryMiB: 2048,
		Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"),
		CmdLine:    cmdline,
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
	return bareCmd{bin: bin, args: args, console: cfg.ConsoleLog, desc: arch + ", " + accel}
}

// bareCmd is a bare VM's QEMU command, its console log and "arch, accelerator".
type bareCmd struct {
	bin     string
	args    []string
	console string
	desc    string
}

// bareBoot boots the guest kernel and initramfs n times with berth.bare=1 and returns the
// median wall time from launching QEMU to its exit.
func bareBoot(b *testing.B, n int) time.Duration {
	bare := bareVM(b, "bare", "quiet panic=-1 berth.bare=1")
	var times []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		out, err := exec.Command(bare.bin, bare.args...).CombinedOutput()
		if err != nil {
			b.Fatalf("bare boot: %v: %s", err, out)
		}
		times = append(times, time.Since(t0))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.Logf("bare boot (%s): %v", bare.desc, times)
	return times[len(times)/2]
}
