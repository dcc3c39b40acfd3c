package guestagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// dockerd's firewall backends (--firewall-backend, Docker 29). Docker's default, iptables,
// runs the iptables command once per rule: about a hundred execs as dockerd starts, which
// under emulation (TCG) is most of its start-up. nftables programs each network's rules in
// one `nft -f -` transaction. Docker's swarm mode has not moved to nftables (dockerd refuses
// `swarm init` and `swarm join` with it), so swarm nodes keep iptables. docs/image.md.
const (
	FirewallNftables = "nftables"
	FirewallIptables = "iptables"
)

// FirewallChoice is the firewall backend berth gives dockerd, and why.
type FirewallChoice struct {
	Backend string // "" leaves it to daemon.json (the user's own choice)
	Why     string
}

// ChooseFirewall picks dockerd's --firewall-backend for this boot:
//   - none when daemon.json names a backend (dockerd refuses the flag and the key together)
//     or turns "iptables" off (then neither backend programs anything);
//   - iptables on WSL2 (its kernel is Microsoft's; what it offers is Docker's default) and
//     for a swarm node: a member of a berth cluster (proto.FlagCluster), or an engine whose
//     data root holds swarm state (`docker swarm init`/`join` was run on it, and a node
//     rejoins its swarm as it starts);
//   - nftables otherwise.
//
// It is decided once per boot: switching backends under a running engine leaves the old
// backend's rules in the kernel until dockerd cleans them up, which Docker does only for
// the networks it restores.
func ChooseFirewall(daemonJSON []byte, clusterMember, onWSL bool, dataRoot string) FirewallChoice {
	if len(daemonJSON) > 0 {
		var cfg map[string]any
		if json.Unmarshal(daemonJSON, &cfg) == nil {
			if _, ok := cfg["firewall-backend"]; ok {
				return FirewallChoice{Why: "daemon.json names the firewall backend"}
			}
			if v, ok := cfg["iptables"].(bool); ok && !v {
				return FirewallChoice{Why: "daemon.json turns iptables off"}
			}
		}
	}
	switch {
	case onWSL:
		return FirewallChoice{FirewallIptables, "WSL2's kernel"}
	case clusterMember:
		return FirewallChoice{FirewallIptables, "a cluster member (swarm needs iptables)"}
	}
	if _, err := os.Stat(filepath.Join(dataRoot, "swarm", "docker-state.json")); err == nil {
		return FirewallChoice{FirewallIptables, "the engine is a swarm node (swarm needs iptables)"}
	}
	return FirewallChoice{FirewallNftables, "the default (one nft transaction per network)"}
}

// withFirewall returns dockerd's argv with --firewall-backend set to backend (replacing one
// already there); "" removes it.
func withFirewall(argv []string, backend string) []string {
	out := make([]string, 0, len(argv)+1)
	for _, a := range argv {
		if strings.HasPrefix(a, "--firewall-backend") {
			continue
		}
		out = append(out, a)
	}
	if backend != "" {
		out = append(out, "--firewall-backend="+backend)
	}
	return out
}

// featureDefaults are dockerd features berth turns off unless daemon.json's "features"
// names them (`docker: {features: {NAME: true}}` in berth.yaml turns one on):
//   - containerd-snapshotter: Docker 29 takes containerd's image store on an empty data
//     root; berth keeps the overlay2 graph driver that its engines have always used (and
//     its disk figures are the graph driver's). An engine whose data root already holds
//     images keeps its store either way.
//   - time-namespaces: Docker 29 gives each container a time namespace, which runc 1.1
//     (Debian 13's) does not know: every container would fail to start with
//     `namespace {"time" ""} does not exist`. This is Docker's own escape hatch for it.
var featureDefaults = []string{"containerd-snapshotter", "time-namespaces"}

// engineFeatureDefaults adds featureDefaults, each false, to the "features" of the
// daemon.json at path (creating the file) where that map does not name them.
func engineFeatureDefaults(path string) error {
	cfg := map[string]any{}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	features, _ := cfg["features"].(map[string]any)
	if features == nil {
		features = map[string]any{}
	}
	changed := false
	for _, f := range featureDefaults {
		if _, ok := features[f]; !ok {
			features[f] = false
			changed = true
		}
	}
	if !changed {
		return nil
	}
	cfg["features"] = features
	b, _ = json.MarshalIndent(cfg, "", "  ")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'), 0o644)
}
