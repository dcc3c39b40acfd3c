package guestagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
)

// EngineSetup installs the host's engine configuration (proto.EngineConfig: daemon.json,
// proxies, CA certificates, DNS) and starts the engine once it is in place. On a fresh
// boot it waits for the host's TypeEngineConfig (bounded by proto.EngineConfigWait); a
// serve process that restarted finds the configuration it saved and starts at once (the
// files it wrote are still there: the root overlay lives as long as the VM).
type EngineSetup struct {
	Engine *Engine
	Log    *slog.Logger
	Paths  EnginePaths
	// ClusterMember and WSL choose dockerd's firewall backend (ChooseFirewall).
	ClusterMember, WSL bool

	mu       sync.Mutex
	applied  *proto.EngineConfig
	defaults bool          // the engine was started with the image's defaults: no configuration came
	got      chan struct{} // closed by the first Configure
	once     sync.Once
}

// EnginePaths are the guest files EngineSetup writes; tests point them into a temp dir.
type EnginePaths struct {
	Saved      string // the configuration as received, JSON
	DaemonJSON string // dockerd's config file
	CABundle   string // the trust store Go programs (dockerd, containerd) read
	CAOrig     string // the image's own bundle, kept to rebuild CABundle
	ResolvConf string // the guest's resolver configuration (written from the DHCP lease)
	ResolvOrig string // the lease's version, kept to rebuild ResolvConf
	// The local registry (registry.go).
	Hosts         string // the guest's /etc/hosts: the registry's name
	CertsD        string // dockerd's per-registry trust: CertsD/NAME:PORT/ca.crt
	RegistryCerts string // the served registry's cert.pem and key.pem
	RegistryData  string // its storage, on the data disk
	RegistryBin   string // tools/registry in the image
}

// DefaultEnginePaths are the image's paths.
func DefaultEnginePaths() EnginePaths {
	return EnginePaths{
		Saved:      "/run/berth/engine-config.json",
		DaemonJSON: "/etc/docker/daemon.json",
		CABundle:   "/etc/ssl/certs/ca-certificates.crt",
		CAOrig:     "/run/berth/ca-certificates.image.crt",
		ResolvConf: "/run/resolv.conf", // /etc/resolv.conf links here (netcfg_linux.go)
		ResolvOrig: "/run/berth/resolv.conf.lease",

		Hosts:         "/etc/hosts",
		CertsD:        "/etc/docker/certs.d",
		RegistryCerts: "/run/berth/registry",
		RegistryData:  "/var/lib/registry", // a bind of the data disk (dataBinds)
		RegistryBin:   "/usr/libexec/berth/registry",
	}
}

func (s *EngineSetup) init() {
	s.once.Do(func() { s.got = make(chan struct{}) })
}

// Run starts the engine when its configuration is in place: at once when a saved one is
// there, else when the host sends one, or after wait with the image's defaults. It
// returns when the engine was started or ctx ended.
func (s *EngineSetup) Run(ctx context.Context, wait time.Duration) {
	s.init()
	if b, err := os.ReadFile(s.Paths.Saved); err == nil {
		var cfg proto.EngineConfig
		if err := json.Unmarshal(b, &cfg); err == nil {
			// The files are in place from the first serve; only the environment is
			// per process.
			s.mu.Lock()
			s.applied = &cfg
			s.Engine.Env = cfg.Env
			s.Engine.Registry = registryArgv(s.Paths, cfg.Registry)
			s.mu.Unlock()
			s.start()
			return
		}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.got:
	case <-t.C:
		s.mu.Lock()
		s.defaults = s.applied == nil
		s.mu.Unlock()
		s.Log.Warn("no engine configuration from the host; starting the engine with the image's defaults", "waited", wait)
	case <-ctx.Done():
		return
	}
	s.start()
}

func (s *EngineSetup) start() {
	s.mu.Lock()
	var daemonJSON []byte
	if s.applied != nil {
		daemonJSON = s.applied.DaemonJSON
	}
	s.mu.Unlock()
	fw := ChooseFirewall(daemonJSON, s.ClusterMember, s.WSL, argValue(s.Engine.Dockerd, "--data-root", ""))
	s.Log.Info("engine firewall", "backend", fw.Backend, "why", fw.Why)
	s.Engine.Dockerd = withFirewall(s.Engine.Dockerd, fw.Backend)
	if err := engineFeatureDefaults(s.Paths.DaemonJSON); err != nil {
		s.Log.Warn("failed to write the engine's feature defaults", "err", err)
	}
	if err := s.Engine.Start(); err != nil {
		s.Log.Error("engine failed to start", "err", err)
	}
}

// Configure installs cfg. The first one releases Run; a later one with a different
// configuration is refused while the engine runs (a restart of the instance applies it).
func (s *EngineSetup) Configure(cfg *proto.EngineConfig) error {
	s.init()
	if cfg == nil {
		cfg = &proto.EngineConfig{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.defaults {
		return fmt.Errorf("the engine started with the image's defaults: no configuration came within %s; restart the instance to apply it", proto.EngineConfigWait)
	}
	if s.applied != nil {
		if sameConfig(s.applied, cfg) {
			return nil
		}
		return errors.New("the engine is already configured differently; restart the instance to apply the new settings")
	}
	if err := s.apply(cfg); err != nil {
		return err
	}
	b, _ := json.Marshal(cfg)
	if err := writeFileAtomic(s.Paths.Saved, b, 0o600); err != nil {
		return fmt.Errorf("failed to save the engine configuration: %w", err)
	}
	s.applied = cfg
	s.Engine.Env = cfg.Env
	s.Engine.Registry = registryArgv(s.Paths, cfg.Registry)
	close(s.got)
	return nil
}

func sameConfig(a, b *proto.EngineConfig) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// apply writes the files of cfg.
func (s *EngineSetup) apply(cfg *proto.EngineConfig) error {
	p := s.Paths
	if len(cfg.DaemonJSON) > 0 {
		var obj map[string]any
		if err := json.Unmarshal(cfg.DaemonJSON, &obj); err != nil {
			return fmt.Errorf("daemon.json from the host is not a JSON object: %w", err)
		}
		b, _ := json.MarshalIndent(obj, "", "  ")
		if err := os.MkdirAll(filepath.Dir(p.DaemonJSON), 0o755); err != nil {
			return err
		}
		if err := writeFileAtomic(p.DaemonJSON, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("failed to write %s: %w", p.DaemonJSON, err)
		}
	}
	if cfg.CACerts != "" {
		if err := installCAs(p.CABundle, p.CAOrig, cfg.CACerts); err != nil {
			return err
		}
	}
	if len(cfg.DNS) > 0 || len(cfg.DNSSearch) > 0 {
		if err := rewriteResolvConf(p.ResolvConf, p.ResolvOrig, cfg.DNS, cfg.DNSSearch); err != nil {
			return err
		}
	}
	if cfg.Registry != nil {
		if err := applyRegistry(p, cfg.Registry); err != nil {
			return err
		}
	}
	return nil
}

// installCAs makes bundle the image's own CAs followed by extra. The image's bundle is
// kept aside the first time, so installing again never stacks copies.
func installCAs(bundle, orig, extra string) error {
	base, err := os.ReadFile(orig)
	if errors.Is(err, os.ErrNotExist) {
		base, err = os.ReadFile(bundle)
		if errors.Is(err, os.ErrNotExist) {
			base, err = nil, nil
		}
		if err == nil {
			if err := os.MkdirAll(filepath.Dir(orig), 0o755); err != nil {
				return err
			}
			err = writeFileAtomic(orig, base, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("failed to read the guest's CA bundle: %w", err)
	}
	var b bytes.Buffer
	b.Write(base)
	if len(base) > 0 && !bytes.HasSuffix(base, []byte("\n")) {
		b.WriteByte('\n')
	}
	b.WriteString("# CA certificates installed by berth from the host\n")
	b.WriteString(extra)
	if !strings.HasSuffix(extra, "\n") {
		b.WriteByte('\n')
	}
	if err := os.MkdirAll(filepath.Dir(bundle), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(bundle, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failed to install CA certificates in %s: %w", bundle, err)
	}
	return nil
}

// rewriteResolvConf rebuilds the resolver configuration from the lease's: dns replaces its
// name servers, search is added to its search domains (glibc reads 3 servers, 6 domains).
func rewriteResolvConf(path, orig string, dns, search []string) error {
	lease, err := os.ReadFile(orig)
	if errors.Is(err, os.ErrNotExist) {
		lease, err = os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			lease, err = nil, nil
		}
		if err == nil {
			if err := os.MkdirAll(filepath.Dir(orig), 0o755); err != nil {
				return err
			}
			err = writeFileAtomic(orig, lease, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	return writeFileAtomic(path, renderResolv(lease, dns, search), 0o644)
}

func renderResolv(lease []byte, dns, search []string) []byte {
	var servers, domains, other []string
	for _, l := range strings.Split(string(lease), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "nameserver":
			servers = append(servers, f[1])
		case len(f) >= 2 && (f[0] == "search" || f[0] == "domain"):
			domains = append(domains, f[1:]...)
		case len(f) > 0 && !strings.HasPrefix(f[0], "#"):
			other = append(other, l)
		}
	}
	if len(dns) > 0 {
		servers = dns
	}
	for _, d := range search {
		if !slices.Contains(domains, d) {
			domains = append(domains, d)
		}
	}
	var b strings.Builder
	b.WriteString("# written by berth-agent from the DHCP lease and berth.yaml (dns, dnsSearch)\n")
	for i, s := range servers {
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(domains) > 6 {
		domains = domains[:6]
	}
	if len(domains) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(domains, " "))
	}
	for _, l := range other {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// engineConfig answers TypeEngineConfig. A server without a Setup (an engine its caller
// started, in tests) has nothing to install and says so in its log only.
func (s *Server) engineConfig(cfg *proto.EngineConfig) error {
	if s.opts.Setup == nil {
		s.log.Info("engine configuration ignored: this server installs none")
		return nil
	}
	return s.opts.Setup.Configure(cfg)
}
