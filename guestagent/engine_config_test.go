package guestagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

func testEnginePaths(t *testing.T) EnginePaths {
	d := t.TempDir()
	return EnginePaths{
		Saved:      filepath.Join(d, "run/berth/engine-config.json"),
		DaemonJSON: filepath.Join(d, "etc/docker/daemon.json"),
		CABundle:   filepath.Join(d, "etc/ssl/certs/ca-certificates.crt"),
		CAOrig:     filepath.Join(d, "run/berth/ca.image.crt"),
		ResolvConf: filepath.Join(d, "run/resolv.conf"),
		ResolvOrig: filepath.Join(d, "run/berth/resolv.conf.lease"),

		Hosts:         filepath.Join(d, "etc/hosts"),
		CertsD:        filepath.Join(d, "etc/docker/certs.d"),
		RegistryCerts: filepath.Join(d, "run/berth/registry"),
		RegistryData:  filepath.Join(d, "var/lib/registry"),
		RegistryBin:   "/usr/libexec/berth/registry",
	}
}

func TestEngineSetupConfigure(t *testing.T) {
	p := testEnginePaths(t)
	os.MkdirAll(filepath.Dir(p.CABundle), 0o755)
	os.WriteFile(p.CABundle, []byte("IMAGE CA\n"), 0o644)
	os.MkdirAll(filepath.Dir(p.ResolvConf), 0o755)
	os.WriteFile(p.ResolvConf, []byte("# lease\nnameserver 192.168.127.1\nsearch lan\n"), 0o644)

	eng := &Engine{}
	s := &EngineSetup{Engine: eng, Log: slog.New(slog.DiscardHandler), Paths: p}
	cfg := &proto.EngineConfig{
		DaemonJSON: []byte(`{"registry-mirrors":["https://m.example"],"log-opts":{"max-size":"1m"}}`),
		Env:        []string{"HTTP_PROXY=http://192.168.127.254:3128"},
		CACerts:    "-----BEGIN CERTIFICATE-----\nHOST\n-----END CERTIFICATE-----",
		DNS:        []string{"10.0.0.53"},
		DNSSearch:  []string{"corp.example"},
	}
	if err := s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	// The same configuration again (a host that reconnected) is fine; another is refused.
	if err := s.Configure(cfg); err != nil {
		t.Fatalf("same config again: %v", err)
	}
	if err := s.Configure(&proto.EngineConfig{Env: []string{"A=b"}}); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("a different config: %v", err)
	}
	if strings.Join(eng.Env, " ") != "HTTP_PROXY=http://192.168.127.254:3128" {
		t.Errorf("engine env %q", eng.Env)
	}
	var dj map[string]any
	b, _ := os.ReadFile(p.DaemonJSON)
	if err := json.Unmarshal(b, &dj); err != nil || dj["registry-mirrors"] == nil {
		t.Errorf("daemon.json %s: %v", b, err)
	}
	ca, _ := os.ReadFile(p.CABundle)
	if !strings.HasPrefix(string(ca), "IMAGE CA\n") || strings.Count(string(ca), "HOST") != 1 {
		t.Errorf("bundle %q", ca)
	}
	// Installing again starts from the image's bundle: no stacked copies.
	if err := installCAs(p.CABundle, p.CAOrig, "HOST2\n"); err != nil {
		t.Fatal(err)
	}
	ca, _ = os.ReadFile(p.CABundle)
	if strings.Contains(string(ca), "HOST\n") || !strings.Contains(string(ca), "IMAGE CA\n") {
		t.Errorf("bundle after a second install %q", ca)
	}
	rc, _ := os.ReadFile(p.ResolvConf)
	if !strings.Contains(string(rc), "nameserver 10.0.0.53\n") || strings.Contains(string(rc), "192.168.127.1") ||
		!strings.Contains(string(rc), "search lan corp.example\n") {
		t.Errorf("resolv.conf %q", rc)
	}

	// A restarted serve process finds the saved configuration and does not wait.
	eng2 := &Engine{}
	s2 := &EngineSetup{Engine: eng2, Log: slog.New(slog.DiscardHandler), Paths: p}
	s2.applied = nil
	b, _ = os.ReadFile(p.Saved)
	var saved proto.EngineConfig
	if err := json.Unmarshal(b, &saved); err != nil || saved.CACerts != cfg.CACerts {
		t.Fatalf("saved %s: %v", b, err)
	}
}

func TestEngineSetupWaitsBounded(t *testing.T) {
	p := testEnginePaths(t)
	s := &EngineSetup{Log: slog.New(slog.DiscardHandler), Paths: p}
	s.init()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx, time.Hour) }()
	// Without a configuration Run waits; ctx ends it.
	select {
	case <-done:
		t.Fatal("Run returned without a configuration")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}

func TestRenderResolv(t *testing.T) {
	lease := []byte("# lease\nnameserver 192.168.127.1\nsearch a b\noptions ndots:2\n")
	got := string(renderResolv(lease, nil, []string{"b", "c"}))
	if !strings.Contains(got, "nameserver 192.168.127.1\n") || !strings.Contains(got, "search a b c\n") || !strings.Contains(got, "options ndots:2\n") {
		t.Errorf("got %q", got)
	}
	got = string(renderResolv(nil, []string{"1.1.1.1", "1.0.0.1", "8.8.8.8", "9.9.9.9"}, nil))
	if strings.Count(got, "nameserver") != 3 || strings.Contains(got, "9.9.9.9") {
		t.Errorf("got %q", got)
	}
}
