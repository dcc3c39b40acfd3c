// Package registry decides where an instance's local registry is (registry.local:5000) and
// keeps its CA: a standalone instance with registry.enabled serves its own, a cluster's
// members use the one its record names (host/cluster). The CA is berth's own, one per
// cluster (or standalone instance), created on first use; the serving guest gets a server
// certificate it signs at every start, and every member's engine trusts the CA for
// registry.local:5000 (guestagent/registry.go). See docs/cluster.md, "The local registry".
package registry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/guestagent/proto"
	"github.com/berth-dev/berth/host/cluster"
	"github.com/berth-dev/berth/host/store"
)

// Files in a CA directory (0700).
const (
	CAFile    = "ca.pem"     // the CA certificate: what `curl --cacert` wants
	CAKeyFile = "ca-key.pem" // the CA's key and certificate (0600)
	dirName   = "registry"   // under the instance's or the cluster's directory
)

// Plan is where an instance's registry is.
type Plan struct {
	// Serve says this instance's VM runs the registry.
	Serve bool
	// Addr is what registry.local resolves to in this instance's guest: its own loopback
	// for a registry of its own, the serving member's cluster address in a cluster.
	Addr string
	// HostPort is the host loopback port of the registry's API; 0 for none. Only the
	// serving instance forwards it.
	HostPort int
	// CADir holds the CA (CAFile, CAKeyFile).
	CADir string
	// Cluster names the cluster, or is empty for a standalone registry.
	Cluster string
}

// CAPath is the CA certificate's path, for `curl --cacert`.
func (p *Plan) CAPath() string { return filepath.Join(p.CADir, CAFile) }

// For returns instance name's plan with config cfg (its berth.yaml), or nil when it has no
// registry. A cluster member that turns the registry on while the cluster's record names
// another member is an error that says which.
func For(inst *store.Instance, cfg store.Config) (*Plan, error) {
	if cfg.Cluster == "" {
		if !cfg.Registry.Enabled {
			return nil, nil
		}
		return &Plan{Serve: true, Addr: "127.0.0.1", HostPort: cfg.Registry.HostPort, CADir: inst.Path(dirName)}, nil
	}
	rec, err := cluster.Load(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	if rec.Registry == "" {
		if cfg.Registry.Enabled {
			return nil, fmt.Errorf("registry.enabled: cluster %q has no registry (it was created with --no-registry); turn it off here (berth config set -p %s registry.enabled=false)", cfg.Cluster, inst.Name)
		}
		return nil, nil
	}
	m, err := rec.Member(rec.Registry)
	if err != nil {
		return nil, fmt.Errorf("cluster %q's record names registry node %q: %w", rec.Name, rec.Registry, err)
	}
	serve := inst.Name == rec.Registry
	if cfg.Registry.Enabled && !serve {
		return nil, fmt.Errorf("registry.enabled: cluster %q's registry is served by %s; turn it off here (berth config set -p %s registry.enabled=false)", rec.Name, rec.Registry, inst.Name)
	}
	dir, err := cluster.Path(rec.Name, dirName)
	if err != nil {
		return nil, err
	}
	p := &Plan{Serve: serve, Addr: m.IP, CADir: dir, Cluster: rec.Name}
	if serve {
		p.HostPort = cfg.Registry.HostPort
	}
	return p, nil
}

// Guest returns the agent's part: the CA for every member, and for the serving one a
// server certificate for registry.local, localhost and its addresses, signed now. The CA
// is created on first use.
func (p *Plan) Guest() (*proto.RegistryConfig, error) {
	ca, key, err := EnsureCA(p.CADir)
	if err != nil {
		return nil, err
	}
	out := &proto.RegistryConfig{Addr: p.Addr, CA: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))}
	if p.Serve {
		cert, k, err := issue(ca, key, []string{proto.RegistryName, "localhost"}, []net.IP{net.ParseIP(p.Addr), net.IPv4(127, 0, 0, 1), net.IPv6loopback})
		if err != nil {
			return nil, err
		}
		out.Cert, out.Key = string(cert), string(k)
	}
	return out, nil
}

// EnsureCA returns the CA in dir, creating it when there is none. Several processes may
// race to create it (the nodes of a cluster starting together): the first one's is kept
// (an atomic link that fails when the file exists) and the others read it.
func EnsureCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if ca, key, err := loadCA(dir); err == nil {
		return ca, key, writeCACert(dir, ca)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "berth local registry CA", Organization: []string{"berth"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	body := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	tmp, err := os.CreateTemp(dir, ".ca-key-*")
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(body); err != nil {
		tmp.Close()
		return nil, nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, nil, err
	}
	if err := os.Link(tmp.Name(), filepath.Join(dir, CAKeyFile)); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, nil, err
	}
	ca, k, err := loadCA(dir) // ours, or the one that won the race
	if err != nil {
		return nil, nil, err
	}
	return ca, k, writeCACert(dir, ca)
}

func loadCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	p := filepath.Join(dir, CAKeyFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, nil, err
	}
	var ca *x509.Certificate
	var key *ecdsa.PrivateKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			ca, err = x509.ParseCertificate(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s is corrupt: %w (delete the directory %s to make a new CA; images pushed stay)", p, err, dir)
		}
	}
	if ca == nil || key == nil || !ca.IsCA {
		return nil, nil, fmt.Errorf("%s holds no CA certificate and key (delete the directory %s to make a new CA; images pushed stay)", p, dir)
	}
	return ca, key, nil
}

// writeCACert keeps CAFile, the certificate alone, in step with the key file.
func writeCACert(dir string, ca *x509.Certificate) error {
	want := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	p := filepath.Join(dir, CAFile)
	if b, err := os.ReadFile(p); err == nil && string(b) == string(want) {
		return nil
	}
	return store.WriteFileAtomic(p, want, 0o644)
}

// issue signs a server certificate for names and ips, valid for a year.
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, names []string, ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	var ok []net.IP
	for _, ip := range ips {
		if ip != nil {
			ok = append(ok, ip)
		}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		IPAddresses:  ok,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
