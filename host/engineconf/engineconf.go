// Package engineconf builds what the guest's engine is configured with (proto.EngineConfig)
// from berth.yaml and the host: the `docker:` section as daemon.json, the proxy (berth.yaml
// or berth's environment, loopback addresses made reachable from the VM), the host's
// trusted CA certificates and the PEM files named in berth.yaml, and DNS. hostd builds it
// before the VM boots, so a bad file is an immediate error, and sends it to the agent,
// which installs it before the engine starts. See docs/config.md, "Engine, proxy, CA, DNS".
package engineconf

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/store"
)

// maxCABytes bounds the PEM bundle sent to the guest (a request line is at most 1 MiB).
const maxCABytes = 768 << 10

// Build returns the engine configuration for cfg. getenv reads berth's environment.
func Build(cfg store.Config, getenv func(string) string, log *slog.Logger) (*proto.EngineConfig, error) {
	out := &proto.EngineConfig{DNS: cfg.DNS, DNSSearch: cfg.DNSSearch}
	if dj := cfg.DaemonJSON(); dj != nil {
		b, err := json.Marshal(dj)
		if err != nil {
			return nil, fmt.Errorf("docker: cannot be written as daemon.json: %w", err)
		}
		out.DaemonJSON = b
	}
	names := make([]string, 0, len(cfg.Env))
	for k := range cfg.Env {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		out.Env = append(out.Env, k+"="+cfg.Env[k])
	}
	out.Env = append(out.Env, ProxyEnv(cfg.Proxy, getenv)...)

	var bundle bytes.Buffer
	seen := map[string]bool{}
	add := func(src string, data []byte) (int, error) {
		n := 0
		for len(data) > 0 {
			var b *pem.Block
			b, data = pem.Decode(data)
			if b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				log.Debug("skipping a certificate that does not parse", "source", src, "err", err)
				continue
			}
			key := string(b.Bytes)
			if seen[key] {
				continue
			}
			enc := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
			if bundle.Len()+len(enc) > maxCABytes {
				return n, fmt.Errorf("more than %d KiB of CA certificates", maxCABytes>>10)
			}
			seen[key] = true
			bundle.Write(enc)
			n++
		}
		return n, nil
	}
	// The files named in berth.yaml first: they are what the user asked for.
	for _, f := range cfg.CACerts {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("caCerts: %w", err)
		}
		n, err := add(f, data)
		if err != nil {
			return nil, fmt.Errorf("caCerts: %s: %w", f, err)
		}
		if n == 0 && !containsCert(data) {
			return nil, fmt.Errorf("caCerts: %s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", f)
		}
	}
	if cfg.HostCACerts {
		host, err := HostCAs()
		if err != nil {
			log.Warn("failed to read the host's trusted CA certificates; the guest gets only its own and caCerts", "err", err)
		}
		if _, err := add("host store", host); err != nil {
			log.Warn("the host's CA certificates were cut short", "err", err)
		}
	}
	out.CACerts = bundle.String()
	return out, nil
}

func containsCert(data []byte) bool {
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			return true
		}
	}
	return false
}

// ProxyEnv returns the proxy variables for the engine: berth.yaml's proxy, else berth's
// environment; "none" drops one. Both spellings are set (Go reads the upper case, other
// tools the lower). A proxy on the host's loopback is reached from the VM through the
// host's address there (proto.HostNATIP), which netproxy maps to the host's 127.0.0.1.
func ProxyEnv(p store.ProxyConfig, getenv func(string) string) []string {
	pick := func(set, name string) string {
		switch set {
		case "none":
			return ""
		case "":
			if v := getenv(name); v != "" {
				return v
			}
			return getenv(strings.ToLower(name))
		}
		return set
	}
	var env []string
	for _, v := range []struct{ name, val string }{
		{"HTTP_PROXY", guestProxyURL(pick(p.HTTP, "HTTP_PROXY"))},
		{"HTTPS_PROXY", guestProxyURL(pick(p.HTTPS, "HTTPS_PROXY"))},
		{"NO_PROXY", pick(p.NoProxy, "NO_PROXY")},
	} {
		if v.val != "" {
			env = append(env, v.name+"="+v.val, strings.ToLower(v.name)+"="+v.val)
		}
	}
	return env
}

// guestProxyURL rewrites a loopback proxy address to the host's address in the VM.
func guestProxyURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		// "proxy:3128" without a scheme: Go's http.ProxyFromEnvironment reads it as http.
		if u2, err2 := url.Parse("http://" + s); err2 == nil && u2.Host != "" && !strings.Contains(s, "://") {
			if r := rewriteHost(u2); r != "" {
				return strings.TrimPrefix(r, "http://")
			}
		}
		return s
	}
	if r := rewriteHost(u); r != "" {
		return r
	}
	return s
}

func rewriteHost(u *url.URL) string {
	h := u.Hostname()
	ip := net.ParseIP(h)
	if h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ""
	}
	host := proto.HostNATIP
	if port := u.Port(); port != "" {
		host = net.JoinHostPort(host, port)
	}
	u.Host = host
	return u.String()
}
