package store

import "strings"

// Key describes one berth.yaml key for `berth config` and docs/config.md.
type Key struct {
	Name    string // as in berth.yaml
	Allowed string // what values are allowed, for error messages and `berth config show --keys`
	Doc     string // one line
}

// Keys lists every key of Config, in file order. A unit test checks that it matches the
// struct's yaml tags and that docs/config.md has a section for each.
var Keys = []Key{
	{"cpus", "a whole number from 1 to 256", "virtual CPUs of the VM"},
	{"memory", "a number of GiB from 1 to 1024, fractions allowed (1.5 is 1536 MiB)", "memory of the VM in GiB"},
	{"disk", "a whole number of GiB from 4 to 16384, never less than the current size", "size of the data disk (images, containers, volumes) in GiB; it only grows"},
	{"arch", "amd64 or arm64", "guest architecture (default: the host's)"},
	{"accel", "auto, kvm, hvf, whpx or tcg", "accelerator; auto picks the best one available"},
	{"images", "a directory path, or empty for the default", "guest image directory (holding <arch>/vmlinuz, initrd.img, root.img)"},
	{"bootTimeout", "a whole number of seconds, at least 10", "bound on each wait of a start (agent up, engine ready)"},
	{"portBindAddress", "127.0.0.1 or 0.0.0.0", "host address for ports published on all addresses"},
	{"portListeners", "none, public or all", "which guest listeners that are not published container ports are forwarded"},
	{"shares", "a list of absolute directory paths, each PATH or PATH:ro (set: comma-separated; [] for none)", "host directories mounted in the VM at the same path"},
	{"dns", "a list of IP addresses (set: comma-separated; [] for none)", "name servers for the guest and its containers instead of berth's resolver"},
	{"env", "a map of NAME: value (set: env.NAME=value)", "extra environment for the guest's container engine"},
	{"idle", "pauseAfter: a duration (5m, 90s; 0 turns pausing off)", "idle.pauseAfter: how long the instance is idle before hostd pauses the VM (default 5m)"},
	{"dnsSearch", "a list of domain names (set: comma-separated; [] for none)", "search domains for the guest and its containers"},
	{"proxy", "http, https: a URL or none; noProxy: a comma-separated list (set: proxy.http=URL)", "HTTP proxy of the guest's engine; empty fields come from berth's environment"},
	{"caCerts", "a list of absolute paths of PEM files (set: comma-separated; [] for none)", "CA certificates the guest trusts, beside the host's store"},
	{"hostCACerts", "true or false", "install the host's trusted CA certificates in the guest (default true)"},
	{"docker", "a map of daemon.json keys (registry-mirrors, insecure-registries, features, log-driver, log-opts, default-address-pools, ...)", "the guest's /etc/docker/daemon.json"},
	{"mountCheck", "true or false", "refuse docker bind mounts of host paths that no share carries (default true)"},
	{"cluster", "a cluster name, or empty", "the cluster this instance is a node of (set by berth cluster create; docs/cluster.md)"},
	{"registry", "enabled: true or false; hostPort: a port from 1 to 65535, or 0 for none", "registry.enabled runs the local registry (registry.local:5000) in this instance; registry.hostPort is its https://localhost port (default 5000)"},
}

// LookupKey finds a key by name, ignoring case ("boottimeout" is bootTimeout).
func LookupKey(name string) (Key, bool) {
	for _, k := range Keys {
		if strings.EqualFold(k.Name, name) {
			return k, true
		}
	}
	return Key{}, false
}

// KeyNames lists the keys' names in file order.
func KeyNames() []string {
	names := make([]string, len(Keys))
	for i, k := range Keys {
		names[i] = k.Name
	}
	return names
}
