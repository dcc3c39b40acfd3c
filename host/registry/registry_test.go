package registry

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/host/cluster"
	"github.com/berth-dev/berth/host/store"
)

func tempHome(t *testing.T) {
	dir, err := os.MkdirTemp("", "br")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("BERTH_HOME", dir)
}

func TestPlanStandalone(t *testing.T) {
	tempHome(t)
	cfg := store.DefaultConfig()
	inst, err := store.Create("solo", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := For(inst, cfg); p != nil || err != nil {
		t.Fatalf("registry off: plan %+v, %v", p, err)
	}
	cfg.Registry = store.RegistryConfig{Enabled: true, HostPort: 5001}
	p, err := For(inst, cfg)
	if err != nil || !p.Serve || p.Addr != "127.0.0.1" || p.HostPort != 5001 || p.CADir != inst.Path("registry") {
		t.Fatalf("plan %+v, %v", p, err)
	}
	g, err := p.Guest()
	if err != nil {
		t.Fatal(err)
	}
	verify(t, g.CA, g.Cert, "registry.local", "localhost")
	verifyIP(t, g.CA, g.Cert, "127.0.0.1")
	if fi, err := os.Stat(filepath.Join(p.CADir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key file: %v %v", fi, err)
	}
	// The CA is kept across starts; the certificate on the host is the CA's alone.
	g2, err := p.Guest()
	if err != nil || g2.CA != g.CA {
		t.Fatalf("a second start changed the CA (%v)", err)
	}
	if b, _ := os.ReadFile(p.CAPath()); string(b) != g.CA || strings.Contains(string(b), "PRIVATE") {
		t.Fatalf("%s: %q", p.CAPath(), b)
	}
}

func TestPlanCluster(t *testing.T) {
	tempHome(t)
	rec, err := cluster.Create("demo", 3, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	plans := map[string]*Plan{}
	for _, m := range rec.Members {
		cfg := store.DefaultConfig()
		cfg.Cluster = "demo"
		cfg.Registry.Enabled = m.Instance == "demo-1"
		inst, err := store.Create(m.Instance, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := For(inst, cfg)
		if err != nil {
			t.Fatal(err)
		}
		plans[m.Instance] = p
		if p.Addr != "10.77.1.11" || p.Serve != (m.Node == 1) || p.Cluster != "demo" {
			t.Fatalf("%s: plan %+v", m.Instance, p)
		}
		if p.Serve != (p.HostPort == 5000) {
			t.Fatalf("%s: host port %d (serve %v)", m.Instance, p.HostPort, p.Serve)
		}
		// A member that is not the registry node and turns it on is told which one is.
		if !p.Serve {
			cfg.Registry.Enabled = true
			if _, err := For(inst, cfg); err == nil || !strings.Contains(err.Error(), "served by demo-1") {
				t.Fatalf("%s with registry.enabled: %v", m.Instance, err)
			}
		}
	}
	g1, err := plans["demo-1"].Guest()
	if err != nil {
		t.Fatal(err)
	}
	verifyIP(t, g1.CA, g1.Cert, "10.77.1.11")
	g3, err := plans["demo-3"].Guest()
	if err != nil {
		t.Fatal(err)
	}
	if g3.CA != g1.CA || g3.Cert != "" || g3.Key != "" {
		t.Fatalf("demo-3 got %+v", g3)
	}

	// No registry in the cluster: members have none, and turning it on says why not.
	if _, err := cluster.Create("bare", 2, 1, false); err != nil {
		t.Fatal(err)
	}
	cfg := store.DefaultConfig()
	cfg.Cluster = "bare"
	inst, _ := store.Create("bare-1", cfg)
	if p, err := For(inst, cfg); p != nil || err != nil {
		t.Fatalf("plan %+v, %v", p, err)
	}
	cfg.Registry.Enabled = true
	if _, err := For(inst, cfg); err == nil || !strings.Contains(err.Error(), "no registry") {
		t.Fatalf("registry.enabled in a cluster without one: %v", err)
	}
}

// TestEnsureCARace: nodes starting together end up with one CA.
func TestEnsureCARace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	var wg sync.WaitGroup
	certs := make([]*x509.Certificate, 8)
	for i := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, _, err := EnsureCA(dir)
			if err != nil {
				t.Error(err)
				return
			}
			certs[i] = ca
		}()
	}
	wg.Wait()
	for _, c := range certs[1:] {
		if c == nil || !c.Equal(certs[0]) {
			t.Fatal("racing starts made different CAs")
		}
	}
	// A corrupt key file is an error that says what to do, not a new CA.
	os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("garbage"), 0o600)
	if _, _, err := EnsureCA(dir); err == nil || !strings.Contains(err.Error(), "delete the directory") {
		t.Fatalf("corrupt CA: %v", err)
	}
}

func pool(t *testing.T, caPEM string) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("no CA certificate")
	}
	return p
}

func leaf(t *testing.T, certPEM string) *x509.Certificate {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		t.Fatal("no server certificate")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func verify(t *testing.T, caPEM, certPEM string, names ...string) {
	t.Helper()
	c := leaf(t, certPEM)
	for _, n := range names {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: n, Roots: pool(t, caPEM)}); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
}

func verifyIP(t *testing.T, caPEM, certPEM, ip string) {
	t.Helper()
	c := leaf(t, certPEM)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool(t, caPEM)}); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname(ip); err != nil || net.ParseIP(ip) == nil {
		t.Errorf("%s: %v", ip, err)
	}
}
