//go:build e2e

package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testProxy: HTTP_PROXY in berth's environment reaches dockerd, its loopback address
// rewritten to the host's address in the VM.
func testProxy(t *testing.T, e *env) {
	if out := strings.TrimSpace(e.mustDocker("info", "--format", "{{.HTTPProxy}}|{{.NoProxy}}")); out != "http://192.168.127.254:3128|host.docker.internal,localhost" {
		t.Errorf("docker info proxy: %q", out)
	}
}

// testDNS: dnsSearch reaches the guest's resolver and dockerd's daemon.json.
func testDNS(t *testing.T, e *env) {
	out := e.mustBerth("shell", "--", "cat", "/etc/resolv.conf", "/etc/docker/daemon.json")
	if !strings.Contains(out, "search") || !strings.Contains(out, "berth.test") || !strings.Contains(out, `"dns-search"`) {
		t.Errorf("resolver and daemon.json: %q", out)
	}
}

// testCATrusted: with the test CA in caCerts, dockerd trusts the registry on the host.
func testCATrusted(t *testing.T, e *env, reg string) {
	ref := reg + "/berth-e2e/bb:1"
	e.mustDocker("tag", image, ref)
	e.mustDocker("push", ref)
	e.mustDocker("rmi", ref)
	e.mustDocker("pull", ref)
}

// testCAUntrusted: without the CA, the same pull fails on the certificate.
func testCAUntrusted(t *testing.T, e *env, reg string) {
	out, err := e.docker_(nil, "pull", reg+"/berth-e2e/bb:1")
	if err == nil || !(strings.Contains(out, "x509") || strings.Contains(out, "certificate")) {
		t.Errorf("pull without the CA: %v: %q", err, out)
	}
}

// testDaemonJSON: registry-mirrors shows in docker info; log-opts are the containers'
// default.
func testDaemonJSON(t *testing.T, e *env) {
	if out := e.mustDocker("info", "--format", "{{json .RegistryConfig.Mirrors}}"); !strings.Contains(out, "https://mirror.berth.test/") {
		t.Errorf("mirrors: %q", out)
	}
	e.mustDocker("create", "--name", "logopts", image, "true")
	if out := e.mustDocker("inspect", "--format", "{{json .HostConfig.LogConfig.Config}}", "logopts"); !strings.Contains(out, `"max-file":"3"`) || !strings.Contains(out, `"max-size":"10m"`) {
		t.Errorf("log-opts: %q", out)
	}
}

// TestEngineInvalidDockerSection: a bad docker: section fails the start before any VM
// boots, naming the key.
func TestEngineInvalidDockerSection(t *testing.T) {
	e := newEnv(t)
	writeConfig(t, e, "bad", "docker:\n  registry-mirror: [https://m.example]\n  data-root: /x\n")
	t0 := time.Now()
	out, err := e.berth("start", "bad")
	if err == nil {
		t.Fatal("start succeeded")
	}
	for _, want := range []string{"docker.registry-mirror: unknown daemon.json key", "docker.data-root: cannot be set here"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(e.home, "bad", "console.log")); err == nil {
		t.Error("a VM was booted")
	}
	t.Logf("refused after %s", time.Since(t0))
}

type testCA struct {
	caFile, certFile, keyFile string
}

// newTestCA makes a CA and a server certificate for host.docker.internal signed by it.
func newTestCA(t *testing.T, dir string) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth e2e CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "host.docker.internal"},
		DNSNames: []string{"host.docker.internal"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	c := testCA{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem")}
	os.WriteFile(c.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(c.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return c
}

// startRegistry builds and runs tools/registry on the host's loopback and returns the
// reference prefix the guest reaches it by: host.docker.internal:PORT.
func startRegistry(t *testing.T, dir string, ca testCA) string {
	t.Helper()
	bin := filepath.Join(dir, "registry-bin")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = "../../tools/registry"
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test registry: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-cert", ca.certFile, "-key", ca.keyFile, "-dir", filepath.Join(dir, "registry-store"))
	stdout, _ := cmd.StdoutPipe()
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addrc <- strings.TrimSpace(line)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("the test registry did not start")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("registry address %q: %v", addr, err)
	}
	return "host.docker.internal:" + port
}
