package guestagent

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/guestagent/proto"
)

// The local registry (docs/cluster.md, "The local registry"): every guest of an instance or
// cluster with one resolves proto.RegistryName to it and trusts its CA for it; the guest
// that serves it runs tools/registry (the image's /usr/libexec/berth/registry), supervised
// with the engine, its storage on the data disk.

// hostsMark ends the /etc/hosts line berth writes, so a rewrite replaces only that line.
const hostsMark = "# berth: local registry"

// checkRegistry validates what the host sent before anything is written.
func checkRegistry(r *proto.RegistryConfig) error {
	if _, err := netip.ParseAddr(r.Addr); err != nil {
		return fmt.Errorf("registry: address %q: %w", r.Addr, err)
	}
	if !strings.Contains(r.CA, "-----BEGIN CERTIFICATE-----") {
		return errors.New("registry: no CA certificate")
	}
	if (r.Cert == "") != (r.Key == "") {
		return errors.New("registry: a certificate needs its key")
	}
	return nil
}

// applyRegistry resolves the registry's name in the guest, makes the engine trust its CA
// for it, and, for the guest that serves it, puts its certificate and key in place.
func applyRegistry(p EnginePaths, r *proto.RegistryConfig) error {
	if err := checkRegistry(r); err != nil {
		return err
	}
	if err := setHostsEntry(p.Hosts, r.Addr, proto.RegistryName); err != nil {
		return err
	}
	ca := filepath.Join(p.CertsD, proto.RegistryEndpoint, "ca.crt")
	if err := os.MkdirAll(filepath.Dir(ca), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(ca, []byte(r.CA), 0o644); err != nil {
		return fmt.Errorf("failed to install the registry's CA in %s: %w", ca, err)
	}
	if r.Cert == "" {
		return nil
	}
	if err := os.MkdirAll(p.RegistryCerts, 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(p.RegistryCerts, "cert.pem"), []byte(r.Cert), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.RegistryCerts, "key.pem"), []byte(r.Key), 0o600)
}

// registryArgv is the registry's command line, or nil when this guest serves none.
func registryArgv(p EnginePaths, r *proto.RegistryConfig) []string {
	if r == nil || r.Cert == "" {
		return nil
	}
	return []string{p.RegistryBin,
		"-addr", ":" + strconv.Itoa(proto.RegistryPort),
		"-cert", filepath.Join(p.RegistryCerts, "cert.pem"),
		"-key", filepath.Join(p.RegistryCerts, "key.pem"),
		"-dir", p.RegistryData,
	}
}

// setHostsEntry makes path map name to addr in a line of berth's own, keeping every other
// line as it is.
func setHostsEntry(path, addr, name string) error {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to read %s: %w", path, err)
	}
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" || strings.HasSuffix(strings.TrimRight(l, "\n"), hostsMark) {
			continue
		}
		out.WriteString(l)
		if !strings.HasSuffix(l, "\n") {
			out.WriteByte('\n')
		}
	}
	fmt.Fprintf(&out, "%s\t%s\t%s\n", addr, name, hostsMark)
	if err := writeFileAtomic(path, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}
