//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/host/api"
)

// minEngineAPI is the oldest engine API berth's guest may ship (Docker 29.8: API 1.56);
// current docker clients refuse engines much older than that.
const minEngineAPI = "1.56"

// TestEngineVersion checks the guest engine through the berth context and that berth
// reports the versions the engine and the guest report themselves: `berth status --json`
// carries what `docker version` and `uname -r` in the guest print, `berth status` and
// `berth version` show them, and the image's manifest.json records the same packages.
func TestEngineVersion(t *testing.T) {
	e := newEnv(t)
	e.mustBerth("start", "--cpus", "2", "--memory", "2")
	st := e.status("default")
	if st.State != api.StateRunning || st.Guest == nil {
		t.Fatalf("state = %s, want Running with a guest (%s)", st.State, st.Error)
	}
	g := st.Guest

	apiVersion := strings.TrimSpace(e.mustDocker("version", "--format", "{{.Server.APIVersion}}"))
	if !versionAtLeast(apiVersion, minEngineAPI) {
		t.Errorf("engine API %q through the berth context, want at least %s", apiVersion, minEngineAPI)
	}

	var server struct {
		Version       string
		APIVersion    string
		KernelVersion string
		Components    []struct{ Name, Version string }
	}
	if err := json.Unmarshal([]byte(e.mustDocker("version", "--format", "{{json .Server}}")), &server); err != nil {
		t.Fatalf("docker version --format '{{json .Server}}': %v", err)
	}
	component := map[string]string{}
	for _, c := range server.Components {
		component[c.Name] = c.Version
	}
	uname := strings.TrimSpace(e.mustBerth("shell", "--", "uname", "-r"))
	for _, c := range []struct{ what, status, want string }{
		{"engine", g.EngineVersion, server.Version},
		{"engine API", g.EngineAPIVersion, server.APIVersion},
		{"containerd", g.ContainerdVersion, component["containerd"]},
		{"runc", g.RuncVersion, component["runc"]},
		{"docker-init", g.InitVersion, component["docker-init"]},
		{"kernel (uname -r in the guest)", g.Kernel, uname},
		{"kernel (docker version)", g.Kernel, server.KernelVersion},
	} {
		if c.want == "" || c.status != c.want {
			t.Errorf("%s: status --json says %q, the guest says %q", c.what, c.status, c.want)
		}
	}
	if !strings.Contains(g.OS, "Debian") {
		t.Errorf("guest OS %q, want the image's Debian release", g.OS)
	}

	// A standalone engine programs its firewall with nftables (one transaction per
	// network instead of ~100 iptables runs), images stay in the overlay2 graph driver,
	// and containers run (no time namespace: runc 1.1 lacks it). docs/image.md.
	if fw := strings.TrimSpace(e.mustDocker("info", "--format", "{{.FirewallBackend.Driver}} {{.Driver}}")); fw != "nftables overlay2" {
		t.Errorf("firewall backend and storage driver %q, want nftables overlay2", fw)
	}
	e.busyboxImage("bb:fw")
	if out := strings.TrimSpace(e.mustDocker("run", "--rm", "bb:fw", "echo", "ran")); out != "ran" {
		t.Errorf("docker run printed %q", out)
	}

	// The image's manifest records the packages the running versions come from.
	var manifest struct {
		KernelVersion string            `json:"kernelVersion"`
		Versions      map[string]string `json:"versions"`
	}
	b, err := os.ReadFile(filepath.Join(os.Getenv("BERTH_IMAGES"), st.Arch, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if manifest.KernelVersion != uname || manifest.Versions["kernel"] != uname {
		t.Errorf("manifest kernel %q / %q, the guest runs %q", manifest.KernelVersion, manifest.Versions["kernel"], uname)
	}
	// The engine is built from its release (tools/versions.env): the manifest names it.
	if m := manifest.Versions["docker"]; m != server.Version {
		t.Errorf("manifest says docker %q, the guest runs %q", m, server.Version)
	}
	// Debian's package version is the upstream one plus the Debian revision.
	for pkg, running := range map[string]string{"containerd": component["containerd"], "runc": component["runc"]} {
		if m := manifest.Versions[pkg]; m == "" || !strings.HasPrefix(m, running+"-") {
			t.Errorf("manifest says %s %q, the guest runs %q", pkg, m, running)
		}
	}

	// Both human outputs show the versions.
	text := e.mustBerth("status")
	ver := e.mustBerth("version")
	for _, v := range []string{server.Version, server.APIVersion, component["containerd"], component["runc"], uname} {
		if !strings.Contains(text, v) {
			t.Errorf("berth status does not show %q", v)
		}
		if !strings.Contains(ver, v) {
			t.Errorf("berth version does not show %q", v)
		}
	}

	// The guest's own docker CLI (the image ships it) talks to the same engine.
	if out := strings.TrimSpace(e.mustBerth("shell", "--", "docker", "version", "--format", "{{.Server.Version}}")); out != server.Version {
		t.Errorf("guest docker CLI sees engine %q, want %q", out, server.Version)
	}
	// Swarm mode needs iptables: a swarm init is refused with what to do, and doing it
	// (the iptables backend, a restart) makes the engine a swarm node; once it is one, it
	// keeps iptables without the setting.
	out, err := e.docker_(nil, "swarm", "init")
	if err == nil || !strings.Contains(out, "docker.firewall-backend=iptables") || !strings.Contains(out, "berth restart") {
		t.Fatalf("docker swarm init on the nftables engine: %v, want berth's refusal\n%s", err, out)
	}
	e.mustBerth("config", "set", "docker.firewall-backend=iptables")
	e.mustBerth("restart")
	e.mustDocker("swarm", "init")
	e.mustBerth("config", "set", "docker.firewall-backend=")
	e.mustBerth("restart")
	if fw := strings.TrimSpace(e.mustDocker("info", "--format", "{{.FirewallBackend.Driver}} {{.Swarm.LocalNodeState}}")); fw != "iptables active" {
		t.Errorf("a swarm node restarted without the setting: %q, want iptables active", fw)
	}
	e.mustDocker("swarm", "leave", "--force")

	e.mustBerth("stop")
	// Stopped: berth version prints its own line only.
	if ver := e.mustBerth("version"); strings.Contains(ver, "Engine") {
		t.Errorf("berth version shows an engine with the instance stopped:\n%s", ver)
	}
}

// versionAtLeast compares dotted numeric versions ("1.45" >= "1.41").
func versionAtLeast(v, min string) bool {
	a, b := strings.Split(v, "."), strings.Split(min, ".")
	for i := range b {
		if i >= len(a) {
			return false
		}
		x, err1 := strconv.Atoi(a[i])
		y, err2 := strconv.Atoi(b[i])
		if err1 != nil || err2 != nil {
			return false
		}
		if x != y {
			return x > y
		}
	}
	return true
}
