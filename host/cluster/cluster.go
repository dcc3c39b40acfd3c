// Package cluster keeps berth's clusters: named groups of instances (NAME-1 … NAME-N)
// that share a cluster network (netproxy/clusternet, served by `berth netd NAME`) and form
// one Docker Swarm. A cluster's state lives in ~/.berth/_clusters/NAME/ (0700): its record
// (cluster.json), netd's control socket (0600), lock and log. See docs/cluster.md.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/host/store"
)

// Files in a cluster's directory.
const (
	RecordFile = "cluster.json"
	NetdSock   = "netd.sock"
	NetdLock   = "netd.pid" // flock held by the running netd, which records its pid
	NetdLog    = "netd.log"
	dirName    = "_clusters"
	createLock = ".lock" // in the _clusters directory: serialises subnet allocation
)

// MaxNodes bounds a cluster's size (the member host numbers stay below 255).
const MaxNodes = 200

// Roles of a member in the Swarm.
const (
	RoleManager = "manager"
	RoleWorker  = "worker"
)

// Record is a cluster's cluster.json.
type Record struct {
	Name string `json:"name"`
	// Index is X in the cluster's subnet 10.77.X.0/24, unique among the clusters.
	Index   int      `json:"index"`
	Subnet  string   `json:"subnet"`
	Members []Member `json:"members"`
	// Registry is the member that serves the cluster's local registry (registry.local);
	// empty for none. Every member resolves the name to its address (host/registry).
	Registry string `json:"registry,omitempty"`
}

// Member is one node of a cluster: instance NAME-N, at 10.77.X.(10+N) with MAC
// 5a:94:ef:77:X:N on the cluster network.
type Member struct {
	Instance string `json:"instance"`
	Node     int    `json:"node"`
	IP       string `json:"ip"`
	MAC      string `json:"mac"`
	Role     string `json:"role"`
}

// Prefix is IP with the subnet's length (10.77.1.11/24), as the guest sets it.
func (m Member) Prefix() string { return m.IP + "/24" }

// ValidName checks a cluster name: its nodes' names (NAME-N) must be valid instance names.
func ValidName(name string) error {
	if err := store.ValidName(name + "-" + strconv.Itoa(MaxNodes)); err != nil || strings.HasPrefix(name, "_") {
		return fmt.Errorf("invalid cluster name %q: use 1-27 lower-case letters, digits and '-', starting with a letter or digit", name)
	}
	return nil
}

// Root is the directory holding every cluster.
func Root() (string, error) {
	r, err := store.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(r, dirName), nil
}

// Dir is a cluster's directory.
func Dir(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	r, err := Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(r, name), nil
}

// Path is a file in a cluster's directory.
func Path(name, file string) (string, error) {
	d, err := Dir(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, file), nil
}

// ErrNotFound is returned for a cluster that does not exist.
var ErrNotFound = errors.New("cluster not found")

// Load reads a cluster's record.
func Load(name string) (*Record, error) {
	p, err := Path(name, RecordFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster %q: %w (create it with `berth cluster create %s --nodes N`)", name, ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", p, err)
	}
	return &r, nil
}

// List returns every cluster's name, sorted.
func List() ([]string, error) {
	r, err := Root()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && ValidName(e.Name()) == nil {
			if _, err := os.Stat(filepath.Join(r, e.Name(), RecordFile)); err == nil {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)
	return names, nil
}

// Member returns the member that instance is, or an error saying it is not one.
func (r *Record) Member(instance string) (Member, error) {
	for _, m := range r.Members {
		if m.Instance == instance {
			return m, nil
		}
	}
	return Member{}, fmt.Errorf("instance %q is not a member of cluster %q", instance, r.Name)
}

// Managers returns the manager members, in node order.
func (r *Record) Managers() []Member {
	var out []Member
	for _, m := range r.Members {
		if m.Role == RoleManager {
			out = append(out, m)
		}
	}
	return out
}

// NodeName is the instance name of a cluster's node n.
func NodeName(cluster string, n int) string { return cluster + "-" + strconv.Itoa(n) }

// newMember computes node n's address and MAC on the cluster with subnet index x.
func newMember(cluster string, x, n int, role string) Member {
	return Member{
		Instance: NodeName(cluster, n),
		Node:     n,
		IP:       fmt.Sprintf("10.77.%d.%d", x, 10+n),
		MAC:      fmt.Sprintf("5a:94:ef:77:%02x:%02x", x, n),
		Role:     role,
	}
}

// Create writes a new cluster's record with nodes members, the first managers of which
// are managers, and node 1 serving the local registry when registry is set. It picks the
// lowest subnet index no other cluster uses. A cluster that exists with the same shape is
// returned as it is (create is re-runnable).
func Create(name string, nodes, managers int, registry bool) (*Record, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if nodes < 1 || nodes > MaxNodes {
		return nil, fmt.Errorf("--nodes %d: want 1 to %d", nodes, MaxNodes)
	}
	if managers < 1 || managers > nodes {
		return nil, fmt.Errorf("--managers %d: want 1 to --nodes (%d)", managers, nodes)
	}
	root, err := Root()
	if err != nil {
		return nil, err
	}
	if _, err := store.EnsureRoot("berth (cluster " + name + ")"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(root, createLock))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if r, err := Load(name); err == nil {
		if len(r.Members) != nodes || len(r.Managers()) != managers {
			return nil, fmt.Errorf("cluster %q exists with %d nodes (%d managers): delete it first (berth cluster delete %s)", name, len(r.Members), len(r.Managers()), name)
		}
		return r, nil
	}
	used := map[int]bool{}
	names, err := List()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if r, err := Load(n); err == nil {
			used[r.Index] = true
		}
	}
	x := 0
	for i := 1; i < 255; i++ {
		if !used[i] {
			x = i
			break
		}
	}
	if x == 0 {
		return nil, errors.New("every cluster subnet (10.77.1.0/24 … 10.77.254.0/24) is in use: delete a cluster first")
	}
	r := &Record{Name: name, Index: x, Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 77, byte(x), 0}), 24).String()}
	for n := 1; n <= nodes; n++ {
		role := RoleWorker
		if n <= managers {
			role = RoleManager
		}
		r.Members = append(r.Members, newMember(name, x, n, role))
	}
	if registry {
		r.Registry = r.Members[0].Instance
	}
	dir, _ := Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := store.WriteFileAtomic(filepath.Join(dir, RecordFile), append(b, '\n'), 0o600); err != nil {
		return nil, err
	}
	return r, nil
}

// Remove deletes the cluster's directory. netd must be stopped first (StopNetd).
func Remove(name string) error {
	dir, err := Dir(name)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	os.Remove(filepath.Dir(dir)) // the clusters' directory, when it was the last one
	return nil
}
