package engineconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/host/store"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestProxyEnv(t *testing.T) {
	tests := []struct {
		name string
		p    store.ProxyConfig
		env  map[string]string
		want string
	}{
		{name: "none", want: ""},
		{name: "environment", env: map[string]string{"HTTP_PROXY": "http://proxy.corp:3128", "no_proxy": "localhost,.corp"},
			want: "HTTP_PROXY=http://proxy.corp:3128 http_proxy=http://proxy.corp:3128 NO_PROXY=localhost,.corp no_proxy=localhost,.corp"},
		{name: "loopback", env: map[string]string{"https_proxy": "http://127.0.0.1:3128"},
			want: "HTTPS_PROXY=http://192.168.127.254:3128 https_proxy=http://192.168.127.254:3128"},
		{name: "localhost without scheme", env: map[string]string{"HTTP_PROXY": "localhost:8080"},
			want: "HTTP_PROXY=192.168.127.254:8080 http_proxy=192.168.127.254:8080"},
		{name: "ipv6 loopback", p: store.ProxyConfig{HTTP: "http://[::1]:3128"},
			want: "HTTP_PROXY=http://192.168.127.254:3128 http_proxy=http://192.168.127.254:3128"},
		{name: "config wins", p: store.ProxyConfig{HTTP: "http://a:1"}, env: map[string]string{"HTTP_PROXY": "http://b:2"},
			want: "HTTP_PROXY=http://a:1 http_proxy=http://a:1"},
		{name: "config none", p: store.ProxyConfig{HTTP: "none"}, env: map[string]string{"HTTP_PROXY": "http://b:2"}, want: ""},
	}
	for _, tt := range tests {
		got := strings.Join(ProxyEnv(tt.p, env(tt.env)), " ")
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func testCert(t *testing.T, cn string) []byte {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestBuild(t *testing.T) {
	dir := t.TempDir()
	ca := testCert(t, "corp CA")
	good := filepath.Join(dir, "corp.pem")
	os.WriteFile(good, append(append([]byte("# comment\n"), ca...), ca...), 0o644)
	cfg := store.DefaultConfig()
	cfg.HostCACerts = false
	cfg.CACerts = []string{good}
	cfg.Env = map[string]string{"B": "2", "A": "1"}
	cfg.DNS = []string{"10.0.0.53"}
	cfg.Docker = map[string]any{"registry-mirrors": []any{"https://m.example"}, "log-opts": map[string]any{"max-file": 3}}
	ec, err := Build(cfg, env(map[string]string{"HTTP_PROXY": "http://127.0.0.1:3128"}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(ec.CACerts, "BEGIN CERTIFICATE") != 1 {
		t.Errorf("bundle has %d certificates, want 1 (deduplicated)", strings.Count(ec.CACerts, "BEGIN CERTIFICATE"))
	}
	if got := strings.Join(ec.Env, " "); got != "A=1 B=2 HTTP_PROXY=http://192.168.127.254:3128 http_proxy=http://192.168.127.254:3128" {
		t.Errorf("env %q", got)
	}
	var dj map[string]any
	if err := json.Unmarshal(ec.DaemonJSON, &dj); err != nil {
		t.Fatal(err)
	}
	if dj["log-opts"].(map[string]any)["max-file"] != "3" || dj["dns"].([]any)[0] != "10.0.0.53" {
		t.Errorf("daemon.json %s", ec.DaemonJSON)
	}

	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o644)
	cfg.CACerts = []string{bad}
	if _, err := Build(cfg, env(nil), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "caCerts: "+bad) {
		t.Errorf("bad file: %v", err)
	}
	cfg.CACerts = []string{filepath.Join(dir, "missing.pem")}
	if _, err := Build(cfg, env(nil), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "caCerts:") {
		t.Errorf("missing file: %v", err)
	}
}

func TestHostCAs(t *testing.T) {
	b, err := HostCAs()
	if err != nil {
		t.Skipf("no host CA store here: %v", err)
	}
	if !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Errorf("host store has no PEM certificate")
	}
}
