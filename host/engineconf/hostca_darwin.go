package engineconf

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"time"
)

// darwinKeychains are read beside the user's search list (the login keychain): the
// System keychain holds the CAs an administrator or an MDM profile installed (a company's
// TLS-intercepting proxy), the system roots keychain Apple's roots.
var darwinKeychains = []string{
	"/Library/Keychains/System.keychain",
	"/System/Library/Keychains/SystemRootCertificates.keychain",
}

// HostCAs returns the certificates of the login and system keychains as PEM, from
// `security find-certificate -a -p`.
func HostCAs() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	var errs []string
	for _, args := range [][]string{{"find-certificate", "-a", "-p"},
		{"find-certificate", "-a", "-p", darwinKeychains[0]},
		{"find-certificate", "-a", "-p", darwinKeychains[1]}} {
		b, err := exec.CommandContext(ctx, "/usr/bin/security", args...).Output()
		if err != nil {
			errs = append(errs, fmt.Sprintf("security %v: %v", args, err))
			continue
		}
		out.Write(b)
	}
	if out.Len() == 0 {
		return nil, fmt.Errorf("no certificates from the keychains: %v", errs)
	}
	return out.Bytes(), nil
}
