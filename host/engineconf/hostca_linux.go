package engineconf

import (
	"errors"
	"os"
)

// linuxBundles are where distributions keep the system's trusted CAs as one PEM file
// (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine), as Go's crypto/x509 looks for them.
var linuxBundles = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// HostCAs returns the host's trusted CA certificates as PEM: $SSL_CERT_FILE, else the
// distribution's bundle (/etc/ssl/certs on Debian).
func HostCAs() ([]byte, error) {
	files := linuxBundles
	if f := os.Getenv("SSL_CERT_FILE"); f != "" {
		files = append([]string{f}, files...)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("no CA bundle found (looked in $SSL_CERT_FILE and " + linuxBundles[0] + ", ...)")
}
