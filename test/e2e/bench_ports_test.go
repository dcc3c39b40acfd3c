//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkPorts measures a forwarded port against the host's own loopback in the same
// run: bulk throughput (1 GiB), small request/response latency, and how long after
// `docker run -p` returns the host port accepts.
func BenchmarkPorts(b *testing.B) {
	const size = 1 << 30
	e := newEnv(b)
	e.mustBerth("start")
	e.busyboxImage(image)
	e.mustDocker("run", "-d", "-p", "18001:9000", image, "testsrv", "sink", "9000")
	e.mustDocker("run", "-d", "-p", "18002:80", image, "testsrv", "http", "80")
	waitHTTPB(b, "http://127.0.0.1:18002/")

	// Baselines on the host's loopback.
	sinkLn := hostSink(b)
	httpLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from 80\n") }))
	defer httpLn.Close()

	fwdBulk := bulk(b, "127.0.0.1:18001", size)
	loBulk := bulk(b, sinkLn, size)
	// The same transfer inside the VM, to the same published port: the guest-side cost
	// without the host↔guest hop.
	out := e.mustDocker("run", "--rm", "--network", "host", image, "testsrv", "send", "127.0.0.1:18001", strconv.Itoa(size))
	vmSecs, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		b.Fatalf("in-VM transfer: %q", out)
	}
	vmBulk := time.Duration(vmSecs * float64(time.Second))
	fwdLat := latency(b, "http://127.0.0.1:18002/", 300)
	loLat := latency(b, "http://"+httpLn.Addr().String()+"/", 300)

	var ready []time.Duration
	for i := 0; i < 3; i++ {
		port := 18010 + i
		e.mustDocker("run", "-d", "-p", fmt.Sprintf("%d:80", port), image, "testsrv", "http", "80")
		t0 := time.Now()
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("port %d never accepted", port)
			}
			time.Sleep(2 * time.Millisecond)
		}
		ready = append(ready, time.Since(t0))
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i] < ready[j] })

	mbps := func(d time.Duration) float64 { return float64(size) / d.Seconds() / (1 << 20) }
	b.Logf("1 GiB: forwarded %.0f MiB/s, VM loopback %.0f MiB/s, host loopback %.0f MiB/s; latency p50: forwarded %s, loopback %s; publish→accept %v",
		mbps(fwdBulk), mbps(vmBulk), mbps(loBulk), fwdLat, loLat, ready)
	b.ReportMetric(mbps(fwdBulk), "fwd-MiB/s")
	b.ReportMetric(mbps(loBulk), "loopback-MiB/s")
	b.ReportMetric(mbps(fwdBulk)/mbps(loBulk), "fwd/loopback-throughput")
	b.ReportMetric(mbps(vmBulk), "vm-loopback-MiB/s")
	b.ReportMetric(mbps(fwdBulk)/mbps(vmBulk), "fwd/vm-loopback-throughput")
	b.ReportMetric(float64(fwdLat.Microseconds()), "fwd-p50-us")
	b.ReportMetric(float64(loLat.Microseconds()), "loopback-p50-us")
	b.ReportMetric(float64(fwdLat)/float64(loLat), "fwd/loopback-latency")
	b.ReportMetric(float64(ready[1].Milliseconds()), "publish-to-accept-ms")
	e.mustBerth("stop")
}

// hostSink is testsrv sink's protocol on the host's loopback.
func hostSink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				c.Write([]byte(strconv.FormatInt(n, 10)))
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// bulk sends size bytes, half-closes, and waits for the receiver's byte count.
func bulk(b *testing.B, addr string, size int64) time.Duration {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	t0 := time.Now()
	for sent := int64(0); sent < size; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(c)
	d := time.Since(t0)
	if strings.TrimSpace(string(got)) != strconv.FormatInt(size, 10) {
		b.Fatalf("receiver counted %q bytes, want %d", got, size)
	}
	return d
}

// latency returns the median of n sequential GETs on one keep-alive connection.
func latency(b *testing.B, url string, n int) time.Duration {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ds = append(ds, time.Since(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}

func waitHTTPB(b *testing.B, url string) {
	t0 := time.Now()
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		if time.Since(t0) > 10*time.Second {
			b.Fatalf("%s never answered", url)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
