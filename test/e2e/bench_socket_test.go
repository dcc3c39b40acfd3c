//go:build e2e

package e2e

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDockerSocket measures bulk data through the forwarded docker socket, both ways,
// against the same transfer with the guest's own docker CLI on /run/docker.sock in the VM,
// in the same run: 512 MiB into a container's stdin (`docker run -i ... cat >/dev/null`,
// the build-context and `docker load` direction) and 512 MiB out of its stdout (the
// `docker save` and `logs` direction).
func BenchmarkDockerSocket(b *testing.B) {
	const mib = 512
	e := newEnv(b)
	e.mustBerth("start")
	e.busyboxImage(image)

	timeIt := func(what string, f func() error) time.Duration {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return time.Since(t0)
	}
	ctx := context.Background()
	up := timeIt("upload through the socket", func() error {
		c := e.dockerCmd(ctx, "run", "-i", "--rm", image, "sh", "-c", "cat >/dev/null")
		c.Stdin = io.LimitReader(zeros{}, mib<<20)
		return c.Run()
	})
	down := timeIt("download through the socket", func() error {
		c := e.dockerCmd(ctx, "run", "--rm", image, "dd", "if=/dev/zero", "bs=1M", "count=512")
		c.Stdout = io.Discard
		return c.Run()
	})
	// The same two in the VM, timed there.
	guestTime := func(cmd string) time.Duration {
		out, err := e.berth("shell", "--", "sh", "-c", "t0=$(date +%s%N); "+cmd+"; t1=$(date +%s%N); echo $(( (t1-t0)/1000000 ))")
		if err != nil {
			b.Fatalf("in the VM: %v: %s", err, out)
		}
		fields := strings.Fields(out)
		var ms int64
		for _, f := range fields {
			if n, err := strconv.ParseInt(f, 10, 64); err == nil {
				ms = n
			}
		}
		return time.Duration(ms) * time.Millisecond
	}
	vmUp := guestTime("dd if=/dev/zero bs=1M count=512 2>/dev/null | docker run -i --rm " + image + " sh -c 'cat >/dev/null'")
	vmDown := guestTime("docker run --rm " + image + " dd if=/dev/zero bs=1M count=512 2>/dev/null >/dev/null")
	rate := func(d time.Duration) float64 { return mib / d.Seconds() }
	b.ReportMetric(rate(up), "up-MiB/s")
	b.ReportMetric(rate(down), "down-MiB/s")
	b.ReportMetric(rate(vmUp), "vm-up-MiB/s")
	b.ReportMetric(rate(vmDown), "vm-down-MiB/s")
	b.ReportMetric(vmUp.Seconds()/up.Seconds(), "up/vm")
	b.ReportMetric(vmDown.Seconds()/down.Seconds(), "down/vm")
	b.Logf("docker socket: up %.1f MiB/s (VM %.1f, ratio %.2f), down %.1f MiB/s (VM %.1f, ratio %.2f)",
		rate(up), rate(vmUp), vmUp.Seconds()/up.Seconds(), rate(down), rate(vmDown), vmDown.Seconds()/down.Seconds())
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
