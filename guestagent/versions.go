package guestagent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/berth-dev/berth/guestagent/dockerapi"
)

// EngineVersions are the versions of the guest's engine stack, as `docker version` prints
// them under Server: dockerd's own, its API, and the components under it.
type EngineVersions struct {
	Engine     string // dockerd ("26.1.5+dfsg1")
	API        string // the engine's API version ("1.45")
	Containerd string // "1.7.24~ds1"
	Runc       string // "1.1.15+ds1"
	Init       string // docker-init, i.e. tini ("0.19.0")
}

// versionProbeTimeout bounds one `containerd --version` / `runc --version` run (a cold
// start of a 50 MB Go binary under TCG takes a second or two).
const versionProbeTimeout = 20 * time.Second

// runcPaths are where the image may have runc (Debian: /usr/sbin/runc, with /usr/bin/runc
// a link); dockerd finds its default runtime "runc" on PATH the same way.
var runcPaths = []string{"/usr/sbin/runc", "/usr/bin/runc"}

// osReleasePaths are os-release(5)'s locations, in the order it says to read them.
var osReleasePaths = []string{"/etc/os-release", "/usr/lib/os-release"}

// parseDockerVersion reads dockerd's GET /version answer (what `docker version` prints).
func parseDockerVersion(r io.Reader) (EngineVersions, error) {
	var v dockerapi.Version
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&v); err != nil {
		return EngineVersions{}, fmt.Errorf("dockerd /version: %w", err)
	}
	return engineVersions(v), nil
}

// engineVersions picks the engine's, containerd's, runc's and docker-init's versions out of
// dockerd's answer.
func engineVersions(v dockerapi.Version) EngineVersions {
	out := EngineVersions{Engine: v.Version, API: v.APIVersion}
	for _, c := range v.Components {
		switch strings.ToLower(c.Name) {
		case "engine":
			if out.Engine == "" {
				out.Engine = c.Version
			}
		case "containerd":
			out.Containerd = c.Version
		case "runc":
			out.Runc = c.Version
		case "docker-init":
			out.Init = c.Version
		}
	}
	return out
}

// parseContainerdVersion reads `containerd --version`:
// "containerd github.com/containerd/containerd 1.7.24~ds1 <commit>"; other builds name
// another package ("containerd containerd.io v1.7.27 <commit>") or none ("containerd 2.0.0").
// The version is the first field after the name that starts with a digit (or v and a digit).
func parseContainerdVersion(out []byte) string {
	f := strings.Fields(firstLine(out))
	if len(f) < 2 || f[0] != "containerd" {
		return ""
	}
	for _, w := range f[1:] {
		w = strings.TrimPrefix(w, "v")
		if w != "" && w[0] >= '0' && w[0] <= '9' {
			return w
		}
	}
	return ""
}

// parseRuncVersion reads `runc --version`: "runc version 1.1.15+ds1" and then commit, spec,
// go and libseccomp lines.
func parseRuncVersion(out []byte) string {
	v, ok := strings.CutPrefix(firstLine(out), "runc version ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(v)
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return strings.TrimSpace(string(line))
}

// commandOutput runs argv with a bounded wait and returns its stdout.
func commandOutput(ctx context.Context, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, versionProbeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	return cmd.Output()
}

// fillFromBinaries asks the binaries for the components dockerd did not report (an engine
// whose runtime or containerd is not the stock one leaves them out): containerd is the
// binary the Engine runs, runc the first of runcPaths that exists.
func (v *EngineVersions) fillFromBinaries(ctx context.Context, containerd string) {
	if v.Containerd == "" && containerd != "" {
		if out, err := commandOutput(ctx, containerd, "--version"); err == nil {
			v.Containerd = parseContainerdVersion(out)
		}
	}
	if v.Runc == "" {
		for _, p := range runcPaths {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if out, err := commandOutput(ctx, p, "--version"); err == nil {
				v.Runc = parseRuncVersion(out)
			}
			break
		}
	}
}

// osPrettyName returns PRETTY_NAME from os-release(5), or "" when there is none.
func osPrettyName() string {
	for _, p := range osReleasePaths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		defer f.Close()
		return parseOSRelease(f)
	}
	return ""
}

// parseOSRelease returns PRETTY_NAME (falling back to NAME VERSION) of an os-release file.
func parseOSRelease(r io.Reader) string {
	kv := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		kv[k] = v
	}
	if kv["PRETTY_NAME"] != "" {
		return kv["PRETTY_NAME"]
	}
	return strings.TrimSpace(kv["NAME"] + " " + kv["VERSION"])
}
