package guestagent

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/guestagent/proto"
)

const testPEM = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"

// TestRegistryConfigure: a serving guest gets the hosts line, the engine's trust for
// registry.local:5000, its certificate and key (0600) and the registry's argv; a member
// that does not serve gets the first two only; a second configure (the restart of the
// serve process) replaces berth's hosts line instead of adding one.
func TestRegistryConfigure(t *testing.T) {
	p := testEnginePaths(t)
	os.MkdirAll(filepath.Dir(p.Hosts), 0o755)
	os.WriteFile(p.Hosts, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost"), 0o644)

	eng := &Engine{}
	s := &EngineSetup{Engine: eng, Log: slog.New(slog.DiscardHandler), Paths: p}
	cfg := &proto.EngineConfig{Registry: &proto.RegistryConfig{Addr: "10.77.1.11", CA: testPEM, Cert: "CERT", Key: "KEY"}}
	if err := s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	hosts, _ := os.ReadFile(p.Hosts)
	if !strings.HasPrefix(string(hosts), "127.0.0.1\tlocalhost\n::1\tlocalhost\n") || !strings.Contains(string(hosts), "10.77.1.11\tregistry.local\t") {
		t.Errorf("hosts %q", hosts)
	}
	if b, _ := os.ReadFile(filepath.Join(p.CertsD, "registry.local:5000", "ca.crt")); string(b) != testPEM {
		t.Errorf("certs.d ca.crt %q", b)
	}
	key := filepath.Join(p.RegistryCerts, "key.pem")
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v %v", fi, err)
	}
	want := []string{p.RegistryBin, "-addr", ":5000", "-cert", filepath.Join(p.RegistryCerts, "cert.pem"), "-key", key, "-dir", p.RegistryData}
	if !slices.Equal(eng.Registry, want) {
		t.Errorf("argv %q, want %q", eng.Registry, want)
	}

	if err := setHostsEntry(p.Hosts, "10.77.1.12", proto.RegistryName); err != nil {
		t.Fatal(err)
	}
	hosts, _ = os.ReadFile(p.Hosts)
	if strings.Count(string(hosts), "registry.local") != 1 || !strings.Contains(string(hosts), "10.77.1.12\tregistry.local") {
		t.Errorf("hosts after a second write %q", hosts)
	}

	// A member that only uses the registry runs none.
	p2 := testEnginePaths(t)
	eng2 := &Engine{}
	s2 := &EngineSetup{Engine: eng2, Log: slog.New(slog.DiscardHandler), Paths: p2}
	if err := s2.Configure(&proto.EngineConfig{Registry: &proto.RegistryConfig{Addr: "10.77.1.11", CA: testPEM}}); err != nil {
		t.Fatal(err)
	}
	if eng2.Registry != nil {
		t.Errorf("a non-serving member runs a registry: %q", eng2.Registry)
	}
	if _, err := os.Stat(p2.RegistryCerts); !os.IsNotExist(err) {
		t.Errorf("a non-serving member got certificate files: %v", err)
	}

	// Bad input from the host is refused before anything is written.
	for _, bad := range []proto.RegistryConfig{
		{Addr: "not-an-ip", CA: testPEM},
		{Addr: "10.0.0.1"},
		{Addr: "10.0.0.1", CA: testPEM, Cert: "CERT"},
	} {
		if err := checkRegistry(&bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
