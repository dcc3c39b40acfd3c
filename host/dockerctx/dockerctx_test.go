package dockerctx

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestEnsureAndRemove(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	// Another tool's settings must survive.
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"x":{}},"currentContext":"berth"}`), 0o600)
	if err := Ensure("berth", "unix:///s/docker.sock", "d"); err != nil {
		t.Fatal(err)
	}
	// Layout the docker CLI reads: contexts/meta/<sha256("berth")>/meta.json.
	sum := sha256.Sum256([]byte("berth"))
	b, err := os.ReadFile(filepath.Join(dir, "contexts", "meta", hex.EncodeToString(sum[:]), "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m meta
	json.Unmarshal(b, &m)
	if m.Name != "berth" || m.Endpoints["docker"].Host != "unix:///s/docker.sock" {
		t.Errorf("meta %+v", m)
	}
	if h, _ := Host("berth"); h != "unix:///s/docker.sock" {
		t.Errorf("Host = %q", h)
	}
	// The real docker CLI must read what we wrote.
	if docker, err := exec.LookPath("docker"); err == nil {
		out, err := exec.Command(docker, "context", "inspect", "berth", "--format", "{{.Endpoints.docker.Host}}").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "unix:///s/docker.sock" {
			t.Errorf("docker context inspect: %v: %s", err, out)
		}
	}
	if err := Remove("berth"); err != nil {
		t.Fatal(err)
	}
	if h, _ := Host("berth"); h != "" {
		t.Errorf("context survived removal: %q", h)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	var c map[string]any
	json.Unmarshal(cfg, &c)
	if _, ok := c["currentContext"]; ok {
		t.Error("currentContext still points at the removed context")
	}
	if _, ok := c["auths"]; !ok {
		t.Error("unrelated settings were lost")
	}
}

func TestName(t *testing.T) {
	if Name("default") != "berth" || Name("dev") != "berth-dev" {
		t.Error("context names")
	}
}

// TestEnsureConcurrent: several processes write one context at once (a cluster's: `berth
// cluster create` and the nodes' hostds); each write succeeds and the context is whole.
func TestEnsureConcurrent(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Ensure("berth-demo", fmt.Sprintf("unix:///n%d/docker.sock", i), "cluster")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	host, err := Host("berth-demo")
	if err != nil || !strings.HasPrefix(host, "unix:///n") {
		t.Fatalf("context after concurrent writes: %q, %v", host, err)
	}
}
