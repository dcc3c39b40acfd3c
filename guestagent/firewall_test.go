package guestagent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestChooseFirewall(t *testing.T) {
	plain := t.TempDir()
	swarm := t.TempDir()
	if err := os.MkdirAll(filepath.Join(swarm, "swarm"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(swarm, "swarm", "docker-state.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	left := t.TempDir() // a node that left its swarm: dockerd empties the directory
	if err := os.MkdirAll(filepath.Join(left, "swarm"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		daemonJSON string
		cluster    bool
		wsl        bool
		root       string
		want       string
	}{
		{"default", "", false, false, plain, FirewallNftables},
		{"daemon.json without the key", `{"log-driver":"local"}`, false, false, plain, FirewallNftables},
		{"user's backend", `{"firewall-backend":"iptables"}`, false, false, plain, ""},
		{"user's backend on a cluster member", `{"firewall-backend":"nftables"}`, true, false, plain, ""},
		{"iptables off", `{"iptables":false}`, false, false, plain, ""},
		{"iptables on", `{"iptables":true}`, false, false, plain, FirewallNftables},
		{"cluster member", "", true, false, plain, FirewallIptables},
		{"swarm node", "", false, false, swarm, FirewallIptables},
		{"left its swarm", "", false, false, left, FirewallNftables},
		{"WSL2", "", false, true, plain, FirewallIptables},
		{"no data root yet", "", false, false, filepath.Join(plain, "missing"), FirewallNftables},
	} {
		got := ChooseFirewall([]byte(c.daemonJSON), c.cluster, c.wsl, c.root)
		if got.Backend != c.want || got.Why == "" {
			t.Errorf("%s: got %+v, want backend %q with a reason", c.name, got, c.want)
		}
	}
}

func TestWithFirewall(t *testing.T) {
	base := []string{"/usr/sbin/dockerd", "--host=unix:///run/docker.sock"}
	if got := withFirewall(base, FirewallNftables); !slices.Equal(got, append(slices.Clone(base), "--firewall-backend=nftables")) {
		t.Errorf("add: %q", got)
	}
	set := append(slices.Clone(base), "--firewall-backend=nftables")
	if got := withFirewall(set, FirewallIptables); !slices.Equal(got, append(slices.Clone(base), "--firewall-backend=iptables")) {
		t.Errorf("replace: %q", got)
	}
	if got := withFirewall(set, ""); !slices.Equal(got, base) {
		t.Errorf("remove: %q", got)
	}
	if !slices.Equal(set, append(slices.Clone(base), "--firewall-backend=nftables")) {
		t.Errorf("withFirewall changed its argument: %q", set)
	}
}

func TestEngineFeatureDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "docker", "daemon.json")
	read := func() map[string]any {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return m
	}
	// No daemon.json: one with the defaults.
	if err := engineFeatureDefaults(path); err != nil {
		t.Fatal(err)
	}
	f := read()["features"].(map[string]any)
	if f["containerd-snapshotter"] != false || f["time-namespaces"] != false || len(f) != 2 {
		t.Errorf("features = %v", f)
	}
	// The user's keys and choices are kept; only missing defaults are added.
	if err := os.WriteFile(path, []byte(`{"log-driver":"local","features":{"containerd-snapshotter":true,"buildkit":true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := engineFeatureDefaults(path); err != nil {
		t.Fatal(err)
	}
	m := read()
	f = m["features"].(map[string]any)
	if m["log-driver"] != "local" || f["containerd-snapshotter"] != true || f["buildkit"] != true || f["time-namespaces"] != false {
		t.Errorf("daemon.json = %v", m)
	}
	// Nothing to add: the file is left alone.
	before, _ := os.ReadFile(path)
	if err := engineFeatureDefaults(path); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Errorf("rewritten:\n%s\n%s", before, after)
	}
	// A broken daemon.json is reported, not replaced.
	if err := os.WriteFile(path, []byte(`{`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := engineFeatureDefaults(path); err == nil {
		t.Error("a broken daemon.json: no error")
	}
}
