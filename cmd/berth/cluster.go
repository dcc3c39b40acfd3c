package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/api"
	"github.com/berth-dev/berth/host/cluster"
	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/registry"
	"github.com/berth-dev/berth/host/store"
)

// swarmTimeout bounds each node's wait to become active in the swarm, and the wait for
// every node to be Ready.
const swarmTimeout = 3 * time.Minute

func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run several instances as one Docker Swarm on a shared cluster network",
		Long: `A cluster is NAME-1 ... NAME-N: instances on a network of their own (10.77.X.0/24,
reachable from each other's VMs and containers, not from outside the host nor from other
instances), joined into one Docker Swarm, with a docker context berth-NAME that points at a
manager. See docs/cluster.md.`,
	}
	cmd.AddCommand(newClusterCreateCommand(), newClusterListCommand(), newClusterStatusCommand(),
		newClusterStartCommand(), newClusterStopCommand(), newClusterDeleteCommand())
	return cmd
}

func newClusterCreateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create NAME --nodes N",
		Short: "Create and start NAME-1 ... NAME-N and join them into one swarm",
		Long: `Create and start NAME-1 ... NAME-N on the cluster network NAME, initialise Docker Swarm
on NAME-1 with its cluster address as the advertise address, join the first --managers as
managers and the others as workers, and write the docker context berth-NAME. NAME-1 also
serves the cluster's registry, registry.local:5000 for every node (TLS with a CA berth
creates for the cluster), at https://localhost:5000 on the host (--registry-port, or
--no-registry). Running it again on an existing cluster starts what is stopped and joins
what is not joined.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			nodes, _ := cmd.Flags().GetInt("nodes")
			managers, _ := cmd.Flags().GetInt("managers")
			// A paused node misses the swarm's heartbeats and drops out: nodes never idle-pause.
			assign := []string{"cluster=" + name, "idle.pauseAfter=0"}
			for _, n := range []string{"cpus", "memory", "disk"} {
				if cmd.Flags().Changed(n) {
					v, _ := cmd.Flags().GetString(n)
					assign = append(assign, n+"="+v)
				}
			}
			noRegistry, _ := cmd.Flags().GetBool("no-registry")
			regPort, _ := cmd.Flags().GetInt("registry-port")
			// Check the settings before anything is created.
			cfg, _, err := store.Set(store.DefaultConfig().Marshal(), assign)
			if err != nil {
				return fmt.Errorf("invalid settings: %w", err)
			}
			regCfg, _, err := store.Set(cfg.Marshal(), []string{"registry.enabled=true", "registry.hostPort=" + strconv.Itoa(regPort)})
			if err != nil {
				return fmt.Errorf("--registry-port: %w", err)
			}
			if _, err := store.Open(name); err == nil {
				return fmt.Errorf("an instance named %q exists and its docker context is %s, the cluster's context name: pick another cluster name", name, cluster.ContextName(name))
			}
			t0 := time.Now()
			rec, err := cluster.Create(name, nodes, managers, !noRegistry)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Cluster %q: %d nodes (%d managers) on %s\n", name, len(rec.Members), len(rec.Managers()), rec.Subnet)
			for _, m := range rec.Members {
				inst, err := store.Open(m.Instance)
				if err == nil {
					c, err := inst.Config()
					if err != nil {
						return err
					}
					if c.Cluster != name {
						return fmt.Errorf("instance %q exists and is not a node of cluster %q: delete it or pick another cluster name", m.Instance, name)
					}
					continue
				}
				c := cfg
				if m.Instance == rec.Registry {
					c = regCfg
				}
				if _, err := store.Create(m.Instance, c); err != nil {
					return err
				}
			}
			if err := bringUp(cmd.Context(), out, rec); err != nil {
				return err
			}
			fmt.Fprintf(out, "Cluster %q ready after %s: docker --context %s node ls\n", name, time.Since(t0).Round(time.Second), cluster.ContextName(name))
			return nil
		},
	}
	cmd.Flags().Int("nodes", 3, "number of instances (NAME-1 ... NAME-N)")
	cmd.Flags().Int("managers", 1, "how many of them (the first ones) are swarm managers")
	cmd.Flags().StringP("cpus", "c", "", "CPUs of each node")
	cmd.Flags().StringP("memory", "m", "", "memory of each node in GiB")
	cmd.Flags().StringP("disk", "d", "", "data disk of each node in GiB")
	cmd.Flags().Int("registry-port", store.DefaultRegistryHostPort, "host port of the cluster registry's API (https://localhost:PORT); 0 for none")
	cmd.Flags().Bool("no-registry", false, "run no registry in the cluster")
	return cmd
}

// self runs this berth with args, each output line prefixed with the node's name.
func self(ctx context.Context, out io.Writer, mu *sync.Mutex, node string, args ...string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	c := exec.CommandContext(ctx, exe, args...)
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintf(out, "[%s] %s\n", node, sc.Text())
			mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	err = c.Run()
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%s: berth %s failed: %w", node, strings.Join(args, " "), err)
	}
	return nil
}

// eachNode runs f for every member at once and joins their errors.
func eachNode(rec *cluster.Record, f func(m cluster.Member) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(rec.Members))
	for i, m := range rec.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(m)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func startNodes(ctx context.Context, out io.Writer, rec *cluster.Record) error {
	var mu sync.Mutex
	return eachNode(rec, func(m cluster.Member) error {
		return self(ctx, out, &mu, m.Instance, "start", m.Instance, "--activate=false")
	})
}

func engineOf(m cluster.Member) (*cluster.Engine, error) {
	inst, err := store.Open(m.Instance)
	if err != nil {
		return nil, err
	}
	return cluster.NewEngine(inst.Path(store.DockerSock)), nil
}

// formSwarm initialises the swarm on the first manager and joins the others; a node that
// is active in the swarm already is left alone, so it is safe to run again.
func formSwarm(ctx context.Context, out io.Writer, rec *cluster.Record) error {
	first := rec.Managers()[0]
	lead, err := engineOf(first)
	if err != nil {
		return err
	}
	s, err := lead.Swarm(ctx)
	if err != nil {
		return err
	}
	if s.LocalNodeState != "active" {
		fmt.Fprintf(out, "[%s] initialising the swarm, advertised on %s\n", first.Instance, first.IP)
		if err := lead.Init(ctx, first.IP); err != nil {
			return fmt.Errorf("%s: swarm init: %w", first.Instance, err)
		}
	}
	worker, manager, err := lead.JoinTokens(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", first.Instance, err)
	}
	var mu sync.Mutex
	return eachNode(rec, func(m cluster.Member) error {
		e, err := engineOf(m)
		if err != nil {
			return err
		}
		s, err := e.Swarm(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Instance, err)
		}
		if s.LocalNodeState != "active" && m.Instance != first.Instance {
			tok := worker
			if m.Role == cluster.RoleManager {
				tok = manager
			}
			mu.Lock()
			fmt.Fprintf(out, "[%s] joining the swarm as a %s, advertised on %s\n", m.Instance, m.Role, m.IP)
			mu.Unlock()
			// Under emulation a join can outlast the engine's own wait; it goes on in the
			// background, and WaitSwarm below sees it through.
			if err := e.Join(ctx, m.IP, first.IP, tok); err != nil && !strings.Contains(err.Error(), "continue in the background") {
				return fmt.Errorf("%s: swarm join: %w", m.Instance, err)
			}
		}
		if _, err := e.WaitSwarm(ctx, swarmTimeout); err != nil {
			return fmt.Errorf("%s: %w", m.Instance, err)
		}
		return nil
	})
}

// pointContext writes the cluster's docker context, pointing at the first manager that
// runs and has the swarm's control plane.
func pointContext(ctx context.Context, rec *cluster.Record) error {
	_, err := cluster.PointContext(ctx, rec, "")
	return err
}

// waitReady waits until a manager lists every member Ready.
func waitReady(ctx context.Context, rec *cluster.Record) error {
	deadline := time.Now().Add(swarmTimeout)
	for {
		nodes, err := swarmNodes(ctx, rec)
		ready := 0
		for _, n := range nodes {
			if n.State == "ready" {
				ready++
			}
		}
		if err == nil && ready >= len(rec.Members) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %q: %d of %d nodes Ready after %s (%v); see berth cluster status %s", rec.Name, ready, len(rec.Members), swarmTimeout, err, rec.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// swarmNodes asks the first running manager for the swarm's nodes.
func swarmNodes(ctx context.Context, rec *cluster.Record) ([]cluster.SwarmNode, error) {
	var lastErr error = errors.New("no manager is running")
	for _, m := range rec.Managers() {
		inst, err := store.Open(m.Instance)
		if err != nil || inst.DaemonPID() == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nodes, err := cluster.NewEngine(inst.Path(store.DockerSock)).Nodes(sctx)
		cancel()
		if err == nil {
			return nodes, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func newClusterStartCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "start NAME",
		Short: "Start every node of a cluster; the swarm re-forms on its fixed addresses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := cluster.Load(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := bringUp(cmd.Context(), out, rec); err != nil {
				return err
			}
			fmt.Fprintf(out, "Cluster %q running\n", rec.Name)
			return nil
		},
	}
}

func newClusterStopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stop NAME",
		Short: "Stop every node of a cluster, then its network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := cluster.Load(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			err = eachNode(rec, func(m cluster.Member) error {
				inst, err := store.Open(m.Instance)
				if err != nil || inst.DaemonPID() == 0 {
					return nil
				}
				return self(cmd.Context(), out, &mu, m.Instance, "stop", m.Instance)
			})
			if err != nil {
				return err
			}
			if err := cluster.StopNetd(cmd.Context(), rec.Name); err != nil {
				return err
			}
			fmt.Fprintf(out, "Cluster %q stopped\n", rec.Name)
			return nil
		},
	}
}

func newClusterDeleteCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete every node of a cluster (data disks too), its network and its docker context",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			rec, err := cluster.Load(name)
			if err != nil {
				return err
			}
			force, _ := cmd.Flags().GetBool("force")
			if !force {
				if err := confirm(cmd, fmt.Sprintf("Delete cluster %q: %d instances with every image, container and volume in them?", name, len(rec.Members)), "--force (-f)"); err != nil {
					return err
				}
			}
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			err = eachNode(rec, func(m cluster.Member) error {
				if _, err := store.Existing(m.Instance); err != nil {
					return nil
				}
				return self(cmd.Context(), out, &mu, m.Instance, "delete", m.Instance, "--force", "--data")
			})
			if err != nil {
				return err
			}
			if err := cluster.StopNetd(cmd.Context(), name); err != nil {
				return err
			}
			if err := dockerctx.Remove(cluster.ContextName(name)); err != nil {
				return err
			}
			if err := cluster.Remove(name); err != nil {
				return err
			}
			fmt.Fprintf(out, "Deleted cluster %q\n", name)
			return nil
		},
	}
	cmd.Flags().BoolP("force", "f", false, "do not ask")
	return cmd
}

// clusterStatus is `berth cluster status --json`.
type clusterStatus struct {
	Name     string          `json:"name"`
	Subnet   string          `json:"subnet"`
	Context  string          `json:"context"`
	Netd     int             `json:"netdPID"` // 0: not running
	Nodes    []nodeStatus    `json:"nodes"`
	Registry *registryStatus `json:"registry,omitempty"`
}

// registryStatus is the cluster's local registry.
type registryStatus struct {
	Node     string `json:"node"`            // the member that serves it
	Endpoint string `json:"endpoint"`        // what the engines use: registry.local:5000
	URL      string `json:"url,omitempty"`   // its API on the host; empty when not forwarded
	CA       string `json:"ca"`              // the CA certificate, for curl --cacert
	Error    string `json:"error,omitempty"` // why the rest is unknown
}

type nodeStatus struct {
	Instance string `json:"instance"`
	Role     string `json:"role"`
	IP       string `json:"ip"`
	State    string `json:"state"`            // the instance's
	Attached bool   `json:"attached"`         // its NIC is on the cluster switch
	Swarm    string `json:"swarm,omitempty"`  // ready, down, ... as a manager sees it
	Leader   bool   `json:"leader,omitempty"` // the swarm's leader
	Error    string `json:"error,omitempty"`
}

func loadStatus(ctx context.Context, rec *cluster.Record) clusterStatus {
	cs := clusterStatus{Name: rec.Name, Subnet: rec.Subnet, Context: cluster.ContextName(rec.Name)}
	attached := map[string]bool{}
	if rep, err := cluster.NetdStatus(ctx, rec.Name); err == nil {
		cs.Netd = rep.PID
		for _, l := range rep.Members {
			attached[l.Member] = true
		}
	}
	swarm := map[string]cluster.SwarmNode{}
	if nodes, err := swarmNodes(ctx, rec); err == nil {
		for _, n := range nodes {
			swarm[n.Hostname] = n
		}
	}
	for _, m := range rec.Members {
		ns := nodeStatus{Instance: m.Instance, Role: m.Role, IP: m.IP, Attached: attached[m.Instance], State: api.StateStopped}
		if inst, err := store.Open(m.Instance); err != nil {
			ns.State, ns.Error = api.StateBroken, err.Error()
		} else if st, err := instance.Status(ctx, inst); err == nil {
			ns.State, ns.Error = st.State, st.Error
		}
		if n, ok := swarm[m.Instance]; ok {
			ns.Swarm, ns.Leader = n.State, n.Leader
		}
		cs.Nodes = append(cs.Nodes, ns)
	}
	if rec.Registry != "" {
		cs.Registry = &registryStatus{Node: rec.Registry, Endpoint: proto.RegistryEndpoint}
		if p, err := registryPlan(rec.Registry); err != nil {
			cs.Registry.Error = err.Error()
		} else if p != nil {
			cs.Registry.CA = p.CAPath()
			if p.HostPort != 0 {
				cs.Registry.URL = "https://localhost:" + strconv.Itoa(p.HostPort)
			}
		}
	}
	return cs
}

// registryPlan is where instance name's registry is (host/registry), from its berth.yaml.
func registryPlan(name string) (*registry.Plan, error) {
	inst, err := store.Open(name)
	if err != nil {
		return nil, err
	}
	cfg, err := inst.Config()
	if err != nil {
		return nil, err
	}
	return registry.For(inst, cfg)
}

func newClusterStatusCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show a cluster's nodes: instance state, cluster address, swarm role and state",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rec, err := cluster.Load(args[0])
			if err != nil {
				return err
			}
			cs := loadStatus(cmd.Context(), rec)
			// The context follows a running manager.
			pointContext(cmd.Context(), rec)
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), cs)
			}
			out := cmd.OutOrStdout()
			netd := "not running"
			if cs.Netd != 0 {
				netd = "pid " + strconv.Itoa(cs.Netd)
			}
			fmt.Fprintf(out, "Cluster %s: network %s (%s), docker context %s\n", cs.Name, cs.Subnet, netd, cs.Context)
			if r := cs.Registry; r != nil {
				switch {
				case r.Error != "":
					fmt.Fprintf(out, "Registry %s on %s: %s\n", r.Endpoint, r.Node, r.Error)
				case r.URL != "":
					fmt.Fprintf(out, "Registry %s on %s, on the host at %s: curl --cacert %s %s/v2/_catalog\n", r.Endpoint, r.Node, r.URL, r.CA, r.URL)
				default:
					fmt.Fprintf(out, "Registry %s on %s (not forwarded to the host), CA %s\n", r.Endpoint, r.Node, r.CA)
				}
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tROLE\tADDRESS\tSTATE\tNETWORK\tSWARM")
			for _, n := range cs.Nodes {
				net := "detached"
				if n.Attached {
					net = "attached"
				}
				sw := n.Swarm
				if sw == "" {
					sw = "-"
				}
				if n.Leader {
					sw += " (leader)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Instance, n.Role, n.IP, n.State, net, sw)
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

func newClusterListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List clusters",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			names, err := cluster.List()
			if err != nil {
				return err
			}
			all := []clusterStatus{}
			for _, n := range names {
				rec, err := cluster.Load(n)
				if err != nil {
					return err
				}
				all = append(all, loadStatus(cmd.Context(), rec))
			}
			if j, _ := cmd.Flags().GetBool("json"); j {
				return printJSON(cmd.OutOrStdout(), all)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tSUBNET\tNODES\tRUNNING\tCONTEXT")
			for _, cs := range all {
				running := 0
				for _, n := range cs.Nodes {
					if n.State == api.StateRunning {
						running++
					}
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", cs.Name, cs.Subnet, len(cs.Nodes), running, cs.Context)
			}
			return w.Flush()
		},
	}
	cmd.Flags().Bool("json", false, "print JSON")
	return cmd
}

// bringUp starts every node, forms (or rejoins) the swarm, points the cluster's docker
// context at a manager and waits until every node is Ready: create and start alike.
func bringUp(ctx context.Context, out io.Writer, rec *cluster.Record) error {
	if err := startNodes(ctx, out, rec); err != nil {
		return err
	}
	if err := formSwarm(ctx, out, rec); err != nil {
		return err
	}
	if err := pointContext(ctx, rec); err != nil {
		return err
	}
	return waitReady(ctx, rec)
}

// printRegistry writes `berth status`'s Registry line when the instance has a local
// registry (docs/cluster.md).
func printRegistry(w io.Writer, name string) {
	p, err := registryPlan(name)
	if err != nil || p == nil {
		return
	}
	ep := proto.RegistryEndpoint
	switch {
	case !p.Serve:
		fmt.Fprintf(w, "Registry:\t%s at %s (cluster %s), CA %s\n", ep, p.Addr, p.Cluster, p.CAPath())
	case p.HostPort != 0:
		fmt.Fprintf(w, "Registry:\t%s served here, https://localhost:%d on the host, CA %s\n", ep, p.HostPort, p.CAPath())
	default:
		fmt.Fprintf(w, "Registry:\t%s served here (not forwarded), CA %s\n", ep, p.CAPath())
	}
}
