package store

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
)

// Engine settings of berth.yaml: the proxy, company CAs, DNS search domains, the `docker:`
// section (the guest's daemon.json) and the docker socket's mount check. docs/config.md,
// "Engine, proxy, CA, DNS", describes them.

// ProxyConfig is the HTTP proxy the guest's engine uses for pulls and pushes. An empty
// field is taken from berth's environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, or their
// lower-case forms); "none" means no proxy even when the environment names one.
type ProxyConfig struct {
	HTTP    string `yaml:"http,omitempty"`
	HTTPS   string `yaml:"https,omitempty"`
	NoProxy string `yaml:"noProxy,omitempty"`
}

// IsZero lets the YAML encoder omit an empty proxy section.
func (p ProxyConfig) IsZero() bool { return p == ProxyConfig{} }

// daemonKey is one daemon.json key berth lets through, with the shape dockerd wants.
type daemonKey struct {
	kind string // string, bool, int, strings, stringMap, boolMap, pools, object
	// check, when set, validates the value further; it returns what is wrong.
	check func(v any) string
}

// daemonKeys are the daemon.json keys of the guest's dockerd (29) that a `docker:`
// section may set. Keys berth sets itself on dockerd's command line are in managedKeys.
var daemonKeys = map[string]daemonKey{
	"registry-mirrors":                 {kind: "strings", check: checkURLs},
	"insecure-registries":              {kind: "strings"},
	"allow-nondistributable-artifacts": {kind: "strings"},
	"features":                         {kind: "boolMap"},
	"experimental":                     {kind: "bool"},
	"debug":                            {kind: "bool"},
	"log-level":                        {kind: "string", check: oneOf("debug", "info", "warn", "error", "fatal")},
	"log-driver":                       {kind: "string"},
	"log-opts":                         {kind: "stringMap"},
	"default-address-pools":            {kind: "pools"},
	"bip":                              {kind: "string", check: checkPrefix},
	"fixed-cidr":                       {kind: "string", check: checkPrefix},
	"fixed-cidr-v6":                    {kind: "string", check: checkPrefix},
	"ipv6":                             {kind: "bool"},
	"mtu":                              {kind: "int"},
	"dns":                              {kind: "strings", check: checkIPs},
	"dns-opts":                         {kind: "strings"},
	"dns-search":                       {kind: "strings"},
	"live-restore":                     {kind: "bool"},
	"max-concurrent-downloads":         {kind: "int"},
	"max-concurrent-uploads":           {kind: "int"},
	"max-download-attempts":            {kind: "int"},
	"shutdown-timeout":                 {kind: "int"},
	"default-ulimits":                  {kind: "object"},
	"builder":                          {kind: "object"},
	"runtimes":                         {kind: "object"},
	"default-runtime":                  {kind: "string"},
	"labels":                           {kind: "strings"},
	"userland-proxy":                   {kind: "bool"},
	"iptables":                         {kind: "bool"},
	"firewall-backend":                 {kind: "string", check: oneOf("iptables", "nftables")},
	"ip6tables":                        {kind: "bool"},
	"ip-forward":                       {kind: "bool"},
	"ip-masq":                          {kind: "bool"},
	"icc":                              {kind: "bool"},
	"init":                             {kind: "bool"},
	"no-new-privileges":                {kind: "bool"},
	"default-shm-size":                 {kind: "string"},
	"default-cgroupns-mode":            {kind: "string", check: oneOf("host", "private")},
	"default-ipc-mode":                 {kind: "string", check: oneOf("shareable", "private")},
	"storage-opts":                     {kind: "strings"},
	"exec-opts":                        {kind: "strings"},
}

// managedKeys are daemon.json keys berth sets on dockerd's command line (dockerd refuses
// to start when a flag and the file both set one) or elsewhere in berth.yaml.
var managedKeys = map[string]string{
	"hosts":           "berth serves the engine on its own socket",
	"containerd":      "berth runs containerd itself",
	"data-root":       "the data disk is mounted at /var/lib/docker",
	"exec-root":       "berth sets it",
	"pidfile":         "berth sets it",
	"host-gateway-ip": "berth sets it to the host's address in the VM",
	"graph":           "the data disk is mounted at /var/lib/docker",
	"storage-driver":  "the guest image's kernel and data disk are set up for overlay2",
	"proxies":         "use proxy: (http, https, noProxy) in berth.yaml",
	"tls":             "the engine is reached only through berth's socket",
	"tlsverify":       "the engine is reached only through berth's socket",
}

// validateEngine checks the engine settings; each message names the key.
func (c Config) validateEngine() []error {
	var errs []error
	for _, d := range c.DNSSearch {
		if d == "" || strings.ContainsAny(d, " \t\n\x00") {
			errs = append(errs, fmt.Errorf("dnsSearch: %q is not allowed: want domain names (e.g. corp.example.com)", d))
		}
	}
	for key, v := range map[string]string{"proxy.http": c.Proxy.HTTP, "proxy.https": c.Proxy.HTTPS} {
		if v == "" || v == "none" {
			continue
		}
		if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") {
			errs = append(errs, fmt.Errorf("%s: %q is not allowed: want a URL such as http://proxy.corp:3128, or none", key, v))
		}
	}
	if strings.ContainsAny(c.Proxy.NoProxy, " \n\x00") {
		errs = append(errs, fmt.Errorf("proxy.noProxy: %q is not allowed: want a comma-separated list without spaces", c.Proxy.NoProxy))
	}
	for _, f := range c.CACerts {
		if f == "" || !isAbs(f) {
			errs = append(errs, fmt.Errorf("caCerts: %q is not allowed: want absolute paths of PEM files", f))
		}
	}
	errs = append(errs, validateDocker(c.Docker, len(c.DNS) > 0, len(c.DNSSearch) > 0)...)
	return errs
}

func isAbs(p string) bool {
	return strings.HasPrefix(p, "/") || (len(p) > 2 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'))
}

// validateDocker checks a `docker:` section against the daemon.json keys dockerd knows.
func validateDocker(doc map[string]any, dns, dnsSearch bool) []error {
	var errs []error
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := doc[k]
		name := "docker." + k
		if why, ok := managedKeys[k]; ok {
			errs = append(errs, fmt.Errorf("%s: cannot be set here: %s", name, why))
			continue
		}
		if (k == "dns" && dns) || (k == "dns-search" && dnsSearch) {
			errs = append(errs, fmt.Errorf("%s: set twice: remove it, or remove the top-level %s key", name, map[string]string{"dns": "dns", "dns-search": "dnsSearch"}[k]))
			continue
		}
		dk, ok := daemonKeys[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown daemon.json key: want one of %s", name, strings.Join(sortedKeys(daemonKeys), ", ")))
			continue
		}
		if msg := checkKind(dk.kind, v); msg != "" {
			errs = append(errs, fmt.Errorf("%s: %s", name, msg))
			continue
		}
		if dk.check != nil {
			if msg := dk.check(v); msg != "" {
				errs = append(errs, fmt.Errorf("%s: %s", name, msg))
			}
		}
	}
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func isScalar(v any) bool {
	switch v.(type) {
	case string, bool, int, int64, uint64, float64:
		return true
	}
	return false
}

func checkKind(kind string, v any) string {
	switch kind {
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("%v is not allowed: want a string", v)
		}
	case "bool":
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%v is not allowed: want true or false", v)
		}
	case "int":
		switch n := v.(type) {
		case int:
			if n < 0 {
				return fmt.Sprintf("%d is not allowed: want a whole number, at least 0", n)
			}
		default:
			return fmt.Sprintf("%v is not allowed: want a whole number", v)
		}
	case "strings":
		l, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%v is not allowed: want a list of strings", v)
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				return fmt.Sprintf("%v is not allowed: want a list of strings", v)
			}
		}
	case "stringMap":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%v is not allowed: want a map of names to values", v)
		}
		for k, e := range m {
			if !isScalar(e) {
				return fmt.Sprintf("%s: %v is not allowed: want a string, number or true/false", k, e)
			}
		}
	case "boolMap":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%v is not allowed: want a map of names to true or false", v)
		}
		for k, e := range m {
			if _, ok := e.(bool); !ok {
				return fmt.Sprintf("%s: %v is not allowed: want true or false", k, e)
			}
		}
	case "object":
		if _, ok := v.(map[string]any); !ok {
			return fmt.Sprintf("%v is not allowed: want a map", v)
		}
	case "pools":
		l, ok := v.([]any)
		if !ok || len(l) == 0 {
			return fmt.Sprintf("%v is not allowed: want a list of {base: CIDR, size: prefix length}", v)
		}
		for _, e := range l {
			m, ok := e.(map[string]any)
			if !ok {
				return fmt.Sprintf("%v is not allowed: want {base: CIDR, size: prefix length}", e)
			}
			base, _ := m["base"].(string)
			p, err := netip.ParsePrefix(base)
			if err != nil {
				return fmt.Sprintf("base %v is not allowed: want a CIDR such as 10.200.0.0/16", m["base"])
			}
			size, ok := m["size"].(int)
			if !ok || size < p.Bits() || size > p.Addr().BitLen() {
				return fmt.Sprintf("size %v is not allowed: want a prefix length from %d to %d", m["size"], p.Bits(), p.Addr().BitLen())
			}
			for k := range m {
				if k != "base" && k != "size" {
					return fmt.Sprintf("%s is not allowed: want only base and size", k)
				}
			}
		}
	}
	return ""
}

func checkURLs(v any) string {
	for _, e := range v.([]any) {
		s := e.(string)
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Sprintf("%q is not allowed: want URLs such as https://mirror.corp.example", s)
		}
	}
	return ""
}

func checkIPs(v any) string {
	for _, e := range v.([]any) {
		if _, err := netip.ParseAddr(e.(string)); err != nil {
			return fmt.Sprintf("%q is not allowed: want IP addresses", e)
		}
	}
	return ""
}

func checkPrefix(v any) string {
	if _, err := netip.ParsePrefix(v.(string)); err != nil {
		return fmt.Sprintf("%q is not allowed: want a CIDR such as 172.30.0.1/16", v)
	}
	return ""
}

func oneOf(allowed ...string) func(any) string {
	return func(v any) string {
		if !slices.Contains(allowed, v.(string)) {
			return fmt.Sprintf("%q is not allowed: want one of %s", v, strings.Join(allowed, ", "))
		}
		return ""
	}
}

// DaemonJSON renders the guest's daemon.json: the `docker:` section, log-opts values as
// strings (dockerd wants strings; YAML makes `max-file: 3` a number), and the top-level
// dns and dnsSearch keys as dockerd's dns and dns-search. nil when there is nothing to set.
func (c Config) DaemonJSON() map[string]any {
	out := map[string]any{}
	for k, v := range c.Docker {
		if k == "log-opts" {
			if m, ok := v.(map[string]any); ok {
				s := make(map[string]string, len(m))
				for mk, mv := range m {
					s[mk] = fmt.Sprint(mv)
				}
				v = s
			}
		}
		out[k] = v
	}
	if len(c.DNS) > 0 {
		out["dns"] = c.DNS
	}
	if len(c.DNSSearch) > 0 {
		out["dns-search"] = c.DNSSearch
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
