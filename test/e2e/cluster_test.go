//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
			for i := 1; i <= nodes; i++ { // before the delete removes them
				e.dumpLogs(node(i))
			}
			e.berth("cluster", "delete", "demo", "--force")
		}
	})

	regPort := freePort(t)
	t0 := time.Now()
	e.mustBerth("cluster", "create", "demo", "--nodes", strconv.Itoa(nodes), "--cpus", "1", "--memory", "1", "--registry-port", strconv.Itoa(regPort))
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
		Registry struct{ Node, Endpoint, URL, CA string }
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
	// Swarm needs dockerd's iptables backend (standalone instances get nftables: TestEngineVersion).
	if fw := strings.TrimSpace(e.mustDockerAt(nodeCtx(2), "info", "--format", "{{.FirewallBackend.Driver}}")); fw != "iptables" {
		t.Errorf("a cluster node's engine uses the %q firewall backend, want iptables", fw)
	}
	if out := e.mustBerth("list"); !strings.Contains(out, "CLUSTER") || !strings.Contains(out, " demo\n") {
		t.Fatalf("berth list does not show the cluster column:\n%s", out)
	}
	if r := st.Registry; r.Node != node(1) || r.Endpoint != "registry.local:5000" || r.URL != "https://localhost:"+strconv.Itoa(regPort) || r.CA == "" {
		t.Fatalf("cluster status: registry %+v", r)
	}
	if out := e.mustBerth("cluster", "status", "demo"); !strings.Contains(out, "curl --cacert "+st.Registry.CA) {
		t.Fatalf("cluster status does not say how to reach the registry:\n%s", out)
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
	cross, local := clusterThroughput(e, nodeCtx(nodes), nodeCtx(2), ip2, img)
	t.Logf("MEASURE node-to-node TCP over the cluster network: 64 MiB in %.2fs (%.1f MiB/s); same VM loopback: %.2fs (%.1f MiB/s); cluster/loopback throughput ratio %.2f",
		cross, 64/cross, local, 64/local, local/cross)

	// Overlay (VXLAN over the cluster network): a service on node 2, reached by its name
	// from a container on the last node.
	e.mustDockerAt("berth-demo", "network", "create", "--driver", "overlay", "--attachable", "appnet")
	e.mustDockerAt("berth-demo", "service", "create", "--name", "echo", "--network", "appnet", "--no-resolve-image",
		"--constraint", "node.hostname=="+node(2), img, "testsrv", "http", "80")
	waitOut(t, 2*time.Minute, "hello from 80", func() (string, error) {
		return e.dockerAt(last, "run", "--rm", "--network", "appnet", img, "testsrv", "get", "http://echo/")
	})
	e.mustDockerAt("berth-demo", "service", "rm", "echo")

	// The seeds' flow through the cluster's registry (node 1, registry.local:5000).
	seedsFlow(t, e, nodes, node, nodeCtx, img, st.Registry.CA, st.Registry.URL)

	// An instance that is not a member cannot attach to the network: netd refuses it.
	e.mustBerth("config", "set", "-p", "solo", "cluster=demo", "cpus=1", "memory=1")
	if out, err := e.berth("start", "solo", "--activate=false"); err == nil || !strings.Contains(out, "not a member of cluster") {
		t.Fatalf("a non-member instance started on the cluster network (err %v):\n%s", err, out)
	}
	e.mustBerth("delete", "--force", "--data", "solo")

	if nodes >= 3 {
		// Context failover: with three managers (two promoted), stopping the node the
		// context points at moves berth-demo to another manager, which answers.
		e.mustDockerAt("berth-demo", "node", "promote", node(2), node(3))
		waitOut(t, 2*time.Minute, "3", func() (string, error) {
			return e.dockerAt("berth-demo", "info", "--format", "{{.Swarm.Managers}}")
		})
		before := e.mustDockerAt("default", "context", "inspect", "berth-demo", "--format", "{{.Endpoints.docker.Host}}")
		if !strings.Contains(before, "/"+node(1)+"/") {
			t.Fatalf("berth-demo points at %s, want %s", before, node(1))
		}
		e.mustBerth("stop", node(1))
		after := e.mustDockerAt("default", "context", "inspect", "berth-demo", "--format", "{{.Endpoints.docker.Host}}")
		if strings.Contains(after, "/"+node(1)+"/") {
			t.Fatalf("berth-demo still points at the stopped %s: %s", node(1), after)
		}
		waitOut(t, 2*time.Minute, node(1)+" Down", func() (string, error) {
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

func mustLookPath(t testing.TB, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: %v", name, err)
	}
	return p
}

// waitOut runs f until its output contains want, at most d.
func waitOut(t testing.TB, d time.Duration, want string, f func() (string, error)) {
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

// seedsFlow is the seeds' tutorial on the cluster: an image built on the cluster and pushed
// to registry.local:5000, listed by the registry's API from the host with berth's CA; a
// service of three replicas, one per node, each node pulling it from the registry, its
// published port answering on the host; the voting app as a stack (five services, two
// overlay networks, a volume) converging; and a stopped worker's task rescheduled while the
// published port keeps answering. img is busybox + testsrv, on every node.
func seedsFlow(t *testing.T, e *env, nodes int, node, nodeCtx func(int) string, img, caPath, regURL string) {
	// Push the base image and build an image on the cluster (the manager, node 1).
	e.mustDockerAt(nodeCtx(1), "tag", img, "registry.local:5000/bb:1")
	e.mustDockerAt(nodeCtx(1), "push", "registry.local:5000/bb:1")
	bctx := filepath.Join(e.root, "web")
	os.MkdirAll(bctx, 0o755)
	os.WriteFile(filepath.Join(bctx, "Dockerfile"), []byte("FROM "+img+"\nCMD [\"testsrv\", \"http\", \"80\"]\n"), 0o644)
	e.mustDockerAt("berth-demo", "build", "-t", "registry.local:5000/web:1.0.0", bctx)
	e.mustDockerAt("berth-demo", "push", "registry.local:5000/web:1.0.0")

	// The registry's API on the host, trusted through berth's CA alone.
	pem, err := os.ReadFile(caPath)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caPath)
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	waitOut(t, time.Minute, `"web"`, func() (string, error) { return httpGetWith(hc, regURL+"/v2/_catalog") })

	// A service of three replicas: one task per node, each node pulls from the registry.
	webPort := freePort(t)
	e.mustDockerAt("berth-demo", "service", "create", "--name", "web", "--replicas", strconv.Itoa(nodes),
		"-p", strconv.Itoa(webPort)+":80", "registry.local:5000/web:1.0.0")
	waitOut(t, 4*time.Minute, fmt.Sprintf("%d/%d", nodes, nodes), func() (string, error) {
		return e.dockerAt("berth-demo", "service", "ls", "--filter", "name=web", "--format", "{{.Replicas}}")
	})
	placed := e.mustDockerAt("berth-demo", "service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Node}}")
	for i := 1; i <= nodes; i++ {
		if !strings.Contains(placed, node(i)) {
			t.Fatalf("no task of web on %s:\n%s", node(i), placed)
		}
		// A service's tasks pull by digest (web@sha256:…), without the tag.
		if out := e.mustDockerAt(nodeCtx(i), "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}"); !strings.Contains(out, "registry.local:5000/web@sha256:") {
			t.Fatalf("%s did not pull registry.local:5000/web from the registry", node(i))
		}
	}
	hostURL := fmt.Sprintf("http://127.0.0.1:%d/", webPort)
	waitOut(t, 2*time.Minute, "hello from 80", func() (string, error) { return httpGetWith(hc, hostURL) })

	// The voting app as a stack.
	stack := filepath.Join(e.root, "stack.yaml")
	if b, err := os.ReadFile("testdata/voting/stack.yaml"); err != nil || os.WriteFile(stack, b, 0o644) != nil {
		t.Fatalf("copying the stack file: %v", err)
	}
	votePort := freePort(t)
	cmd := exec.Command("docker", "--context", "berth-demo", "stack", "deploy", "--detach=true", "-c", stack, "vote")
	cmd.Env = append(e.environ(), "VOTE_PORT="+strconv.Itoa(votePort))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	waitOut(t, 5*time.Minute, "5 converged", func() (string, error) {
		out, err := e.dockerAt("berth-demo", "stack", "services", "vote", "--format", "{{.Name}} {{.Replicas}}")
		n := 0
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == "1/1" {
				n++
			}
		}
		return fmt.Sprintf("%d converged\n%s", n, out), err
	})
	waitOut(t, 2*time.Minute, "worker-ok", func() (string, error) {
		return e.dockerAt("berth-demo", "service", "logs", "--raw", "vote_worker")
	})
	waitOut(t, 2*time.Minute, "hello from 80", func() (string, error) {
		return httpGetWith(hc, fmt.Sprintf("http://127.0.0.1:%d/", votePort))
	})
	e.mustDockerAt("berth-demo", "stack", "rm", "vote")

	// A worker stops: its task moves to the other nodes and the port keeps answering.
	if nodes >= 3 {
		e.mustBerth("stop", node(nodes))
		waitOut(t, 4*time.Minute, "rescheduled", func() (string, error) {
			out, err := e.dockerAt("berth-demo", "service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Node}} {{.CurrentState}}")
			running := 0
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) >= 2 && f[0] != node(nodes) && f[1] == "Running" {
					running++
				}
			}
			if running == nodes {
				return "rescheduled", err
			}
			return out, err
		})
		waitOut(t, 2*time.Minute, "hello from 80", func() (string, error) { return httpGetWith(hc, hostURL) })
		// The restarted node rejoins by itself on its fixed address.
		e.mustBerth("start", node(nodes), "--activate=false")
		waitOut(t, 3*time.Minute, node(nodes)+" Ready", func() (string, error) {
			return e.dockerAt("berth-demo", "node", "ls", "--format", "{{.Hostname}} {{.Status}}")
		})
	}
	e.mustDockerAt("berth-demo", "service", "rm", "web")
}

// httpGetWith fetches url with c and returns the body.
func httpGetWith(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return err.Error(), err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

// clusterThroughput times 64 MiB over TCP from node from to node to's cluster address ip
// (a sink on port 8082 of to's host network), and the same transfer inside to over its
// own loopback, in seconds. img is busybox + testsrv on both nodes.
func clusterThroughput(e *env, from, to, ip, img string) (cross, local float64) {
	t := e.t
	t.Helper()
	e.mustDockerAt(to, "run", "-d", "--name", "bulk", "--network", "host", img, "testsrv", "sink", "8082")
	const size = 64 << 20
	// send times one transfer from ctxName to addr: its seconds, or 0 when it failed.
	send := func(ctxName, addr string) (float64, string, error) {
		out, err := e.dockerAt(ctxName, "run", "--rm", "--network", "host", img, "testsrv", "send", addr, strconv.Itoa(size))
		if f := strings.Fields(out); err == nil && len(f) > 0 {
			if sec, perr := strconv.ParseFloat(f[len(f)-1], 64); perr == nil && sec > 0 {
				return sec, out, nil
			}
		}
		return 0, out, err
	}
	// The sink may still be starting: the first transfer is retried for a minute.
	deadline := time.Now().Add(60 * time.Second)
	for cross == 0 {
		var out string
		var err error
		if cross, out, err = send(from, ip+":8082"); cross == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no transfer to %s:8082 within 60s: %v\n%s", ip, err, out)
			}
			time.Sleep(2 * time.Second)
		}
	}
	local, out, err := send(to, "127.0.0.1:8082")
	if local == 0 {
		t.Fatalf("no timing from the transfer over %s's loopback: %v\n%s", to, err, out)
	}
	return cross, local
}
