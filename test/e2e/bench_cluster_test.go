//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCluster measures a two-node cluster (1 CPU, 1 GiB each, no registry): the time
// from `berth cluster create` to both nodes Ready, and 64 MiB over TCP from node 2 to node
// 1's cluster address against the same transfer over node 1's own loopback, as a ratio in
// the same run (1.0: the cluster network costs nothing beyond the VM's own TCP stack).
func BenchmarkCluster(b *testing.B) {
	e := newEnv(b)
	b.Cleanup(func() { e.berth("cluster", "delete", "bench", "--force") })
	t0 := time.Now()
	e.mustBerth("cluster", "create", "bench", "--nodes", "2", "--cpus", "1", "--memory", "1", "--no-registry")
	ready := time.Since(t0)
	var st struct{ Nodes []struct{ IP string } }
	if err := json.Unmarshal([]byte(e.mustBerth("cluster", "status", "bench", "--json")), &st); err != nil || len(st.Nodes) != 2 {
		b.Fatalf("cluster status: %v", err)
	}
	tarball := filepath.Join(e.root, "busybox.tar")
	if err := writeBusyboxTar(mustLookPath(b, "busybox"), tarball); err != nil {
		b.Fatal(err)
	}
	const img = "127.0.0.1:5999/bb:1"
	for _, c := range []string{"berth-bench-1", "berth-bench-2"} {
		e.mustDockerAt(c, "import", tarball, img)
	}
	cross, local := clusterThroughput(e, "berth-bench-2", "berth-bench-1", st.Nodes[0].IP, img)
	b.ReportMetric(ready.Seconds(), "create-to-ready-s")
	b.ReportMetric(64/cross, "node-to-node-MiB/s")
	b.ReportMetric(64/local, "loopback-MiB/s")
	b.ReportMetric(local/cross, "cluster/loopback")
	b.Logf("cluster create --nodes 2 to Ready: %s; 64 MiB node to node %.2fs (%.1f MiB/s), same VM loopback %.2fs (%.1f MiB/s): ratio %.2f",
		ready.Round(time.Second), cross, 64/cross, local, 64/local, local/cross)
}
