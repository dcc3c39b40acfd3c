package store

import (
	"strings"
	"testing"
)

func TestEngineConfigValidate(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{name: "good", yaml: `
docker:
  registry-mirrors: [https://mirror.corp.example]
  insecure-registries: [registry.corp:5000]
  features: {buildkit: true}
  log-driver: json-file
  log-opts: {max-size: 10m, max-file: 3}
  default-address-pools: [{base: 10.200.0.0/16, size: 24}]
proxy: {http: "http://proxy.corp:3128", noProxy: "localhost,.corp"}
dnsSearch: [corp.example]
caCerts: [/etc/corp-ca.pem]
mountCheck: false
`},
		{name: "unknown key", yaml: "docker:\n  registry-mirror: [https://m]\n", wantErr: "docker.registry-mirror: unknown daemon.json key"},
		{name: "managed key", yaml: "docker:\n  data-root: /x\n", wantErr: "docker.data-root: cannot be set here"},
		{name: "proxies key", yaml: "docker:\n  proxies: {}\n", wantErr: "use proxy:"},
		{name: "mirror not a URL", yaml: "docker:\n  registry-mirrors: [mirror.corp]\n", wantErr: `docker.registry-mirrors: "mirror.corp" is not allowed`},
		{name: "mirrors not a list", yaml: "docker:\n  registry-mirrors: https://m\n", wantErr: "docker.registry-mirrors: https://m is not allowed: want a list of strings"},
		{name: "log-opts nested", yaml: "docker:\n  log-opts: {a: {b: c}}\n", wantErr: "docker.log-opts: a:"},
		{name: "features not bool", yaml: "docker:\n  features: {buildkit: yes please}\n", wantErr: "docker.features: buildkit:"},
		{name: "pool size", yaml: "docker:\n  default-address-pools: [{base: 10.0.0.0/16, size: 8}]\n", wantErr: "docker.default-address-pools: size 8"},
		{name: "firewall backend", yaml: "docker:\n  firewall-backend: ebtables\n", wantErr: "docker.firewall-backend: "},
		{name: "dns twice", yaml: "dns: [1.1.1.1]\ndocker:\n  dns: [8.8.8.8]\n", wantErr: "docker.dns: set twice"},
		{name: "proxy url", yaml: "proxy: {https: 'proxy corp'}\n", wantErr: "proxy.https:"},
		{name: "relative CA", yaml: "caCerts: [ca.pem]\n", wantErr: `caCerts: "ca.pem" is not allowed`},
		{name: "bad search", yaml: "dnsSearch: ['a b']\n", wantErr: "dnsSearch:"},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.yaml))
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			if c.MountCheck || !c.HostCACerts || c.DaemonJSON()["log-opts"].(map[string]string)["max-file"] != "3" {
				t.Errorf("%s: parsed %+v", tt.name, c)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
	d := DefaultConfig()
	if !d.MountCheck || !d.HostCACerts || d.DaemonJSON() != nil {
		t.Errorf("defaults: %+v", d)
	}
	// An empty proxy section stays out of a written file.
	if strings.Contains(string(d.Marshal()), "proxy") {
		t.Errorf("marshal writes an empty proxy: %s", d.Marshal())
	}
}
