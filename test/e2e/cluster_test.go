//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// dockerAt runs the docker CLI against a named context.
func (e *env) dockerAt(context_ string, args ...string) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--context", context_}, args...)...)
	cmd.Env = e.environ()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	e.t.Logf("$ docker --context %s %s (err %v)\n%s", context_, strings.Join(args, " "), err, out.String())
	return out.String(), err
}

func (e *env) mustDockerAt(context_ string, args ...string) string {
	e.t.Helper()
	out, err := e.dockerAt(context_, args...)
	if err != nil {
		e.t.Fatalf("docker --context %s %s: %v", context_, strings.Join(args, " "), err)
	}
	return out
}

// TestCluster: `berth cluster create` makes a three-node swarm on the cluster network;
// an overlay network carries a service's traffic between nodes by name; a node restarts
// and rejoins; an instance outside the cluster cannot join its network; `cluster delete`
// leaves nothing behind. Nodes have 1 CPU and 1 GiB (BERTH_E2E_CLUSTER_NODES overrides
// the node count).
func TestCluster(t *testing.T) {
	e := newEnv(t)
	nodes := 3
	if v := os.Getenv("BERTH_E2E_CLUSTER_NODES"); v != "" {
		nodes, _ = strconv.Atoi(v)
	}
	node := func(i int) string { return fmt.Sprintf("demo-%d", i) }
	nodeCtx := func(i int) string { return "berth-" + node(i) }
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.home, "_clusters", "demo", "netd.log"))
			t.Logf("==== netd.log ====\n%s", b)
			e.berth("cluster", "delete", "demo", "--force")
		}
	})

	t0 := time.Now()
	e.mustBerth("cluster", "create", "demo", "--nodes", strconv.Itoa(nodes), "--cpus", "1", "--memory", "1")
	created := time.Since(t0)
	t.Logf("MEASURE cluster create --nodes %d: all nodes Ready after %s", nodes, created.Round(time.Second))

	out := e.mustDockerAt("berth-demo", "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
	for i := 1; i <= nodes; i++ {
		if !strings.Contains(out, node(i)+" Ready") {
			t.Fatalf("docker node ls lacks %s Ready:\n%s", node(i), out)
		}
	}
	var st struct {
		Subnet string
		Nodes  []struct {
			Instance, IP, State, Swarm string
			Attached                   bool
		}
	}
	if err := json.Unmarshal([]byte(e.mustBerth("cluster", "status", "demo", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != nodes {
		t.Fatalf("cluster status lists %d nodes, want %d", len(st.Nodes), nodes)
	}
	for _, n := range st.Nodes {
		if !n.Attached || n.State != "Running" || n.Swarm != "ready" {
			t.Fatalf("cluster status: node %+v, want Running, attached, ready", n)
		}
	}
	if out := e.mustBerth("list"); !strings.Contains(out, "CLUSTER") || !strings.Contains(out, " demo\n") {
		t.Fatalf("berth list does not show the cluster column:\n%s", out)
	}

	// No registry is reachable: each node gets the image from the host. Its name points
	// at the guest's own loopback, so the swarm's pull attempt fails at once inside the
	// guest (and the local copy runs) instead of reaching for Docker Hub.
	tarball := filepath.Join(e.root, "busybox.tar")
	if err := writeBusyboxTar(mustLookPath(t, "busybox"), tarball); err != nil {
		t.Fatal(err)
	}
	const img = "127.0.0.1:5999/bb:1"
	for i := 1; i <= nodes; i++ {
		e.mustDockerAt(nodeCtx(i), "import", tarball, img)
	}

	// Plain TCP between VMs on their cluster addresses: a listener on node 2's cluster
	// address, reached from a container on the last node (bridge → guest routing → cluster NIC).
	ip2 := st.Nodes[1].IP
	e.mustDockerAt(nodeCtx(2), "run", "-d", "--name", "plain", "--network", "host", img, "testsrv", "http", "8081")
	last := nodeCtx(nodes)
	t.Cleanup(func() {
		if t.Failed() {
			e.dockerAt(nodeCtx(2), "ps", "-a")
			e.dockerAt(nodeCtx(2), "logs", "plain")
		}
	})
	// From the last VM itself (host network: its cluster NIC, no NAT)...
	waitOut(t, 90*time.Second, "hello from 8081", func() (string, error) {
		return e.dockerAt(last, "run", "--rm", "--network", "host", img, "testsrv", "get", "http://"+ip2+":8081/")
	})
	// ...and from a container on its bridge network (routed and masqueraded by the guest).
	waitOut(t, 90*time.Second, "hello from 8081", func() (string, error) {
		return e.dockerAt(last, "run", "--rm", img, "testsrv", "get", "http://"+ip2+":8081/")
	})

	// Throughput: 64 MiB over TCP from the last node to node 2 across the cluster network,
	// against the same transfer inside node 2 (its own loopback), in the same run.
	e.mustDockerAt(nodeCtx(2), "run", "-d", "--name", "bulk", "--network", "host", img, "testsrv", "sink", "8082")
	const size = 64 << 20
	timed := func(ctxName, addr string) float64 {
		out := e.mustDockerAt(ctxName, "run", "--rm", "--network", "host", img, "testsrv", "send", addr, strconv.Itoa(size))
		f := strings.Fields(out)
		if len(f) == 0 {
			t.Fatalf("no timing from testsrv send: %q", out)
		}
		sec, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("no timing from testsrv send: %q", out)
		}
		return sec
	}
	var cross float64
	waitOut(t, 60*time.Second, "sent", func() (string, error) {
		cross = timed(last, ip2+":8082")
		return "sent", nil
	})
	local := timed(nodeCtx(2), "127.0.0.1:8082")
	t.Logf("MEASURE node-to-node TCP over the cluster network: 64 MiB in %.2fs (%.1f MiB/s); same VM loopback: %.2fs (%.1f MiB/s); cluster/loopback throughput ratio %.2f",
		cross, 64/cross, local, 64/local, local/cross)

	// Overlay (VXLAN over the cluster network): a service on node 2, reached by its name
	// from a container on the last node.
	e.mustDockerAt("berth-demo", "network", "create", "--driver", "overlay", "--attachable", "appnet")
	e.mustDockerAt("berth-demo", "service", "create", "--name", "web", "--network", "appnet", "--no-resolve-image",
		"--constraint", "node.hostname=="+node(2), img, "testsrv", "http", "80")
	waitOut(t, 2*time.Minute, "hello from 80", func() (string, error) {
		return e.dockerAt(last, "run", "--rm", "--network", "appnet", img, "testsrv", "get", "http://web/")
	})

	// An instance that is not a member cannot attach to the network: netd refuses it.
	e.mustBerth("config", "set", "-p", "solo", "cluster=demo", "cpus=1", "memory=1")
	if out, err := e.berth("start", "solo", "--activate=false"); err == nil || !strings.Contains(out, "not a member of cluster") {
		t.Fatalf("a non-member instance started on the cluster network (err %v):\n%s", err, out)
	}
	e.mustBerth("delete", "--force", "--data", "solo")

	// A restarted node rejoins by itself on its fixed address.
	if nodes >= 3 {
		e.mustBerth("stop", node(nodes))
		waitOut(t, 2*time.Minute, node(nodes)+" Down", func() (string, error) {
			return e.dockerAt("berth-demo", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		})
		e.mustBerth("start", node(nodes), "--activate=false")
		waitOut(t, 3*time.Minute, node(nodes)+" Ready", func() (string, error) {
			return e.dockerAt("berth-demo", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		})
	}

	// Delete leaves no process, socket, directory or context behind.
	e.mustBerth("cluster", "delete", "demo", "--force")
	if _, err := os.Stat(filepath.Join(e.home, "_clusters", "demo")); !os.IsNotExist(err) {
		t.Fatalf("the cluster's directory is left: %v", err)
	}
	for i := 1; i <= nodes; i++ {
		if _, err := os.Stat(filepath.Join(e.home, node(i))); !os.IsNotExist(err) {
			t.Fatalf("%s's directory is left: %v", node(i), err)
		}
	}
	if out := e.mustDockerAt("default", "context", "ls", "--format", "{{.Name}}"); strings.Contains(out, "berth-demo") {
		t.Fatalf("docker contexts left:\n%s", out)
	}
	if pids := processesUnder(e.home); len(pids) > 0 {
		t.Fatalf("processes left under %s: %v", e.home, pids)
	}
}

func mustLookPath(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %v", name, err)
	}
	return p
}

// waitOut runs f until its output contains want, at most d.
func waitOut(t *testing.T, d time.Duration, want string, f func() (string, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _ := f()
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q after %s; last output:\n%s", want, d, out)
		}
		time.Sleep(3 * time.Second)
	}
}

// processesUnder lists the pids whose environment has BERTH_HOME=home.
func processesUnder(home string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte("\x00BERTH_HOME="+home+"\x00")) || bytes.HasPrefix(b, []byte("BERTH_HOME="+home+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
