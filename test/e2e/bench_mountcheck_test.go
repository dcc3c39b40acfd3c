//go:build e2e

package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkDockerSocketMountCheck measures the docker socket with the bind mount check on
// (host/dockerproxy) against off, in the same run, on the same instance (a restart
// between): 256 MiB into a container's stdin (an attach: raw bytes after the request
// head), a 256 MiB build context (a chunked POST /build body the check frames chunk by
// chunk), and 256 MiB out of a container. Each is timed twice and the better time kept.
// The acceptance bar is on/off >= 0.95 for each.
func BenchmarkDockerSocketMountCheck(b *testing.B) {
	const mib = 256
	e := newEnv(b)
	writeConfig(b, e, "default", "mountCheck: true\n")
	e.mustBerth("start")
	e.busyboxImage(image)
	ctxDir := filepath.Join(e.root, "bigctx")
	os.MkdirAll(ctxDir, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM "+image+"\n"), 0o644)
	f, _ := os.Create(filepath.Join(ctxDir, "blob"))
	io.Copy(f, io.LimitReader(zeros{}, mib<<20))
	f.Close()

	ctx := context.Background()
	best := func(what string, run func() error) time.Duration {
		var d time.Duration
		for i := 0; i < 2; i++ {
			t0 := time.Now()
			if err := run(); err != nil {
				b.Fatalf("%s: %v", what, err)
			}
			if t := time.Since(t0); d == 0 || t < d {
				d = t
			}
		}
		return d
	}
	measure := func() (up, build, down time.Duration) {
		up = best("upload", func() error {
			c := e.dockerCmd(ctx, "run", "-i", "--rm", image, "sh", "-c", "cat >/dev/null")
			c.Stdin = io.LimitReader(zeros{}, mib<<20)
			return c.Run()
		})
		build = best("build context", func() error {
			c := e.dockerCmd(ctx, "build", "-q", "--no-cache", "-t", "berth-e2e/ctx", ctxDir)
			c.Env = append(c.Env, "DOCKER_BUILDKIT=0")
			c.Stdout = io.Discard
			return c.Run()
		})
		down = best("download", func() error {
			c := e.dockerCmd(ctx, "run", "--rm", image, "dd", "if=/dev/zero", "bs=1M", "count=256")
			c.Stdout = io.Discard
			return c.Run()
		})
		return
	}
	onUp, onBuild, onDown := measure()
	writeConfig(b, e, "default", "mountCheck: false\n")
	e.mustBerth("restart")
	offUp, offBuild, offDown := measure()

	rate := func(d time.Duration) float64 { return mib / d.Seconds() }
	ratio := func(on, off time.Duration) float64 { return off.Seconds() / on.Seconds() }
	b.ReportMetric(rate(onUp), "on-up-MiB/s")
	b.ReportMetric(rate(offUp), "off-up-MiB/s")
	b.ReportMetric(rate(onBuild), "on-build-MiB/s")
	b.ReportMetric(rate(offBuild), "off-build-MiB/s")
	b.ReportMetric(rate(onDown), "on-down-MiB/s")
	b.ReportMetric(rate(offDown), "off-down-MiB/s")
	b.ReportMetric(ratio(onUp, offUp), "up-on/off")
	b.ReportMetric(ratio(onBuild, offBuild), "build-on/off")
	b.ReportMetric(ratio(onDown, offDown), "down-on/off")
	b.Logf("mount check on/off: up %.2f (%.1f vs %.1f MiB/s), build context %.2f (%.1f vs %.1f), down %.2f (%.1f vs %.1f)",
		ratio(onUp, offUp), rate(onUp), rate(offUp), ratio(onBuild, offBuild), rate(onBuild), rate(offBuild),
		ratio(onDown, offDown), rate(onDown), rate(offDown))
	for name, r := range map[string]float64{"up": ratio(onUp, offUp), "build": ratio(onBuild, offBuild), "down": ratio(onDown, offDown)} {
		if r < 0.95 {
			b.Errorf("%s: with the mount check the socket runs at %.2f of its speed without (want >= 0.95)", name, r)
		}
	}
}
