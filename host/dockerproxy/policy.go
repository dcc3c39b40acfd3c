package dockerproxy

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// VMPaths are guest paths a bind mount may name without a share: they exist only in the VM
// (the engine's socket, its state, the guest's system), and tools that mount them
// (`-v /var/run/docker.sock:...`, node exporters with `-v /:/host`) mean the VM's. "/"
// counts only by itself.
var VMPaths = []string{
	"/proc", "/sys", "/dev", "/run", "/var/run", "/var/lib", "/var/log", "/etc",
	"/usr", "/lib", "/lib64", "/bin", "/sbin",
}

// Policy decides the host paths of bind mounts, and whether the engine may join a swarm.
type Policy struct {
	// Shares are the host directories the VM has at the same path.
	Shares []string
	// NoMountCheck passes every bind mount on unchecked (berth.yaml mountCheck: false).
	NoMountCheck bool
	// Swarm, when set, is asked before a swarm init or join goes to the engine: an error
	// refuses the request with its message (an engine that cannot be a swarm node says
	// why, and what to do, in berth's words).
	Swarm func() error
	// Instance names the instance in the hint of a refusal.
	Instance string
	// resolve resolves symlinks of an existing host path (filepath.EvalSymlinks); tests
	// replace it.
	resolve func(string) (string, error)
}

// NewPolicy returns the policy for an instance's shares.
func NewPolicy(instance string, shares []string) *Policy {
	p := &Policy{Instance: instance}
	for _, s := range shares {
		p.Shares = append(p.Shares, filepath.ToSlash(filepath.Clean(s)))
	}
	return p
}

// DeniedError is a bind source no share carries.
type DeniedError struct {
	Path     string
	Instance string
}

func (e *DeniedError) Error() string {
	name := ""
	if e.Instance != "" && e.Instance != "default" {
		name = " " + e.Instance
	}
	return fmt.Sprintf("Mounts denied: the path %s is not shared from the host and is not known to Docker. "+
		"Share it (or a directory above it): add it under shares: with `berth config edit%s`, then `berth restart%s`; "+
		"see docs/file-sharing.md", e.Path, name, name)
}

// Resolve returns the path the engine should bind for the host path src: src itself when a
// share holds it or it is a VM path, the shared path it reaches through a host symlink
// (macOS /tmp/x is /private/tmp/x), or a *DeniedError.
func (p *Policy) Resolve(src string) (string, error) {
	if !strings.HasPrefix(src, "/") {
		// A named volume, or a path this check does not understand: the engine decides.
		return src, nil
	}
	c := path.Clean(src)
	if p.shared(c) || vmPath(c) {
		return src, nil
	}
	if r, ok := p.translate(c); ok {
		return r, nil
	}
	return "", &DeniedError{Path: src, Instance: p.Instance}
}

func (p *Policy) shared(c string) bool {
	for _, s := range p.Shares {
		if under(c, s) {
			return true
		}
	}
	return false
}

func vmPath(c string) bool {
	if c == "/" {
		return true
	}
	for _, v := range VMPaths {
		if under(c, v) {
			return true
		}
	}
	return false
}

// under reports whether p is dir or inside it (both clean, slash-separated).
func under(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// translate resolves the host symlinks of c's longest existing prefix and reports the
// result when a share holds it.
func (p *Policy) translate(c string) (string, bool) {
	resolve := p.resolve
	if resolve == nil {
		resolve = filepath.EvalSymlinks
	}
	prefix, rest := c, ""
	for {
		if r, err := resolve(filepath.FromSlash(prefix)); err == nil {
			out := path.Join(filepath.ToSlash(r), rest)
			if out != c && p.shared(out) {
				return out, true
			}
			return "", false
		} else if !os.IsNotExist(err) && !isNotDir(err) {
			return "", false
		}
		if prefix == "/" {
			return "", false
		}
		dir, base := path.Split(prefix)
		rest = path.Join(base, rest)
		prefix = path.Clean(dir)
	}
}

func isNotDir(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not a directory")
}
