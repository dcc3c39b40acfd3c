//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkCompose times, through the berth context from the host, `docker compose up -d` of
// the voting-app project (testdata/voting, images already built) and a build whose 1 GiB
// context is streamed through the socket, each against the same work inside the VM with
// the guest's own docker CLI on /run/docker.sock (`berth shell -- docker ...`), in the same
// run. The guest uses the same compose and buildx plugins (linux builds of the pinned
// releases, reached through a share), so the ratios measure the socket path, not the tools.
func BenchmarkCompose(b *testing.B) {
	tc := newToolchain(b)
	e := newEnv(b)
	// One share: the project, the guest's plugin directory; the big context is copied onto
	// the VM's own disk for the in-VM run.
	share := filepath.Join(e.root, "bench")
	os.MkdirAll(share, 0o755)
	writeConfig(b, e, "default", fmt.Sprintf("shares:\n  - path: %q\n", share))
	tc.installPlugins(b, e)
	guestCfg := filepath.Join(share, "dockercfg")
	os.MkdirAll(filepath.Join(guestCfg, "cli-plugins"), 0o755)
	for _, p := range []string{"docker-compose", "docker-buildx"} {
		data, err := os.ReadFile(filepath.Join(tc.dir, "cli-plugins", p))
		if err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(guestCfg, "cli-plugins", p), data, 0o755)
	}
	e.mustBerth("start")
	e.busyboxImage(image)

	// inVM runs a shell command in the VM and returns the milliseconds it printed last.
	inVM := func(script string) time.Duration {
		b.Helper()
		out, err := e.berth("shell", "--", "sh", "-c", script)
		if err != nil {
			b.Fatalf("in the VM: %v: %s", err, out)
		}
		fields := strings.Fields(out)
		for i := len(fields) - 1; i >= 0; i-- {
			if ms, err := strconv.ParseInt(fields[i], 10, 64); err == nil {
				return time.Duration(ms) * time.Millisecond
			}
		}
		b.Fatalf("in the VM: no time printed: %s", out)
		return 0
	}
	timed := func(cmd string) string {
		return "t0=$(date +%s%N); " + cmd + " >/tmp/berth-bench.out 2>&1 || { cat /tmp/berth-bench.out; exit 1; }; t1=$(date +%s%N); echo $(( (t1-t0)/1000000 ))"
	}
	if out, err := e.berth("shell", "--", "docker", "version", "--format", "{{.Client.Version}}"); err != nil {
		b.Fatalf("the guest has no docker CLI: %v: %s", err, out)
	}

	// The plugins run from the VM's own disk: shares are mounted noexec in the guest.
	shareCfg := guestCfg
	guestCfg = "/var/lib/docker/berth-bench-dockercfg"
	inVM(fmt.Sprintf("rm -rf %s && mkdir -p %s && cp -r %q/cli-plugins %s/ && echo 0", guestCfg, guestCfg, shareCfg, guestCfg))

	// docker compose up -d, images built beforehand, down -v between runs.
	project := votingProject(b, &env{t: b, root: share})
	port := freePort(b)
	composeEnv := []string{fmt.Sprintf("VOTE_PORT=%d", port)}
	e.mustRunDocker("docker", project, composeEnv, "compose", "build")
	const rounds = 2
	var host, vm []time.Duration
	guestEnv := fmt.Sprintf("cd %q && export DOCKER_CONFIG=%q VOTE_PORT=%d DOCKER_HOST=unix:///run/docker.sock", project, guestCfg, port)
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		e.mustRunDocker("docker", project, composeEnv, "compose", "up", "-d", "--no-build")
		host = append(host, time.Since(t0))
		e.mustRunDocker("docker", project, composeEnv, "compose", "down", "-v")
		vm = append(vm, inVM(guestEnv+" && "+timed("docker compose up -d --no-build")))
		inVM(guestEnv + " && " + timed("docker compose down -v"))
	}
	hostUp, vmUp := fastest(host), fastest(vm)

	// A 1 GiB build context: from the host through the socket, and in the VM from its own disk.
	const size = 1 << 30
	ctxDir := bigContext(b, &env{t: b, root: share}, size)
	guestCtx := "/var/lib/docker/berth-bench-ctx" // the VM's data disk
	inVM(fmt.Sprintf("rm -rf %s && mkdir -p %s && cp %q/Dockerfile %q/big %s/ && sync && echo 0", guestCtx, guestCtx, ctxDir, ctxDir, guestCtx))
	build := []string{"build", "--no-cache", "--progress=plain", "-t", "berth-e2e/bigctx", "."}
	var hostB, vmB []time.Duration
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		out := e.mustRunDocker("docker", ctxDir, nil, build...)
		hostB = append(hostB, time.Since(t0))
		if !strings.Contains(out, "BYTES=1073741824") {
			b.Fatalf("the build did not see the whole context:\n%s", out)
		}
		vmB = append(vmB, inVM(fmt.Sprintf("cd %s && export DOCKER_CONFIG=%q DOCKER_HOST=unix:///run/docker.sock && ", guestCtx, guestCfg)+timed("docker "+strings.Join(build, " "))))
	}
	inVM("rm -rf " + guestCtx + " " + guestCfg + " && echo 0")
	hostBuild, vmBuild := fastest(hostB), fastest(vmB)

	b.ReportMetric(hostUp.Seconds(), "compose-up-s")
	b.ReportMetric(vmUp.Seconds(), "vm-compose-up-s")
	b.ReportMetric(hostUp.Seconds()/vmUp.Seconds(), "compose-up/vm")
	b.ReportMetric(hostBuild.Seconds(), "ctx1GiB-build-s")
	b.ReportMetric(vmBuild.Seconds(), "vm-ctx1GiB-build-s")
	b.ReportMetric(hostBuild.Seconds()/vmBuild.Seconds(), "ctx1GiB-build/vm")
	b.Logf("compose up -d: host %.1fs, in the VM %.1fs (ratio %.2f; runs %v / %v); 1 GiB context build: host %.1fs (%.0f MiB/s), in the VM %.1fs (ratio %.2f; runs %v / %v)",
		hostUp.Seconds(), vmUp.Seconds(), hostUp.Seconds()/vmUp.Seconds(), host, vm,
		hostBuild.Seconds(), float64(size>>20)/hostBuild.Seconds(), vmBuild.Seconds(), hostBuild.Seconds()/vmBuild.Seconds(), hostB, vmB)
}

// fastest is the best of the rounds: the least disturbed by the rest of the machine.
func fastest(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0]
}
