package install

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/host/dockerctx"
)

// The docker toolchain berth ships (tools/build.sh builds it, tools/versions.env pins it):
// two docker CLI plugins, installed into the user's plugin directory, and the docker CLI,
// installed into the prefix only where no docker is on the PATH.
var toolchainPlugins = []string{"docker-compose", "docker-buildx"}

const dockerCLIName = "docker"

// ToolchainDirs are the places, relative to the berth binary's directory, where a build or
// a package keeps the toolchain: beside it (make build's _output/bin, make cross, the macOS
// app's Contents/Resources) or in ../lib/berth (the .deb's /usr/lib/berth, the Windows
// package's Berth\lib\berth). Each holds cli-plugins/docker-{compose,buildx} and docker.
var ToolchainDirs = []string{".", filepath.Join("..", "lib", "berth")}

// findToolchain returns the first toolchain directory beside exe that holds a plugin.
func findToolchain(exe, goos string) string {
	real, err := filepath.EvalSymlinks(exe)
	if err != nil {
		real = exe
	}
	for _, rel := range ToolchainDirs {
		d := filepath.Clean(filepath.Join(filepath.Dir(real), rel))
		for _, p := range toolchainPlugins {
			if st, err := os.Stat(filepath.Join(d, "cli-plugins", ExeName(goos, p))); err == nil && st.Mode().IsRegular() {
				return d
			}
		}
	}
	return ""
}

// PluginDir is the docker CLI's per-user plugin directory: $DOCKER_CONFIG/cli-plugins,
// default ~/.docker/cli-plugins.
func PluginDir() (string, error) {
	d, err := dockerctx.ConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "cli-plugins"), nil
}

// toolVersion asks a plugin (the docker CLI plugin metadata call) or the docker CLI
// (--version) for its version; "" when it does not answer within a few seconds.
func toolVersion(ctx context.Context, path string, plugin bool) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	args := []string{"--version"}
	if plugin {
		args = []string{"docker-cli-plugin-metadata"}
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout = &out
	cmd.WaitDelay = time.Second
	if cmd.Run() != nil {
		return ""
	}
	if !plugin {
		// "Docker version 29.10.0, build abc" → "29.10.0".
		s := strings.TrimSpace(out.String())
		s = strings.TrimPrefix(s, "Docker version ")
		s, _, _ = strings.Cut(s, ",")
		return s
	}
	var meta struct{ Version string }
	if json.Unmarshal(out.Bytes(), &meta) != nil {
		return ""
	}
	return meta.Version
}

// dockerToolchain installs the plugins into the user's docker CLI plugin directory and, when
// no docker CLI is on the PATH, berth's docker CLI into the prefix. A plugin or CLI berth
// did not install (not in the record) is never replaced: it is named, with its version,
// and kept.
func (in *installer) dockerToolchain() error {
	tc := in.o.Toolchain
	if tc == "" {
		tc = findToolchain(in.o.Exe, in.o.GOOS)
	}
	if tc == "" {
		fmt.Fprintf(in.o.Out, "  %-10s no docker toolchain beside %s (`make build` builds docker compose, buildx and the docker CLI): skipped\n", "note", in.tilde(in.o.Exe))
		return nil
	}
	pluginDir := in.o.PluginDir
	if pluginDir == "" {
		var err error
		if pluginDir, err = PluginDir(); err != nil {
			return err
		}
	}
	var errs []error
	for _, p := range toolchainPlugins {
		name := ExeName(in.o.GOOS, p)
		src := filepath.Join(tc, "cli-plugins", name)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := in.installTool(src, filepath.Join(pluginDir, name), true); err != nil {
			errs = append(errs, err)
		}
	}
	src := filepath.Join(tc, ExeName(in.o.GOOS, dockerCLIName))
	if _, err := os.Stat(src); err == nil {
		if err := in.dockerCLI(src); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dockerCLI installs berth's docker CLI into the prefix's bin directory unless a docker CLI
// that is not berth's is on the PATH.
func (in *installer) dockerCLI(src string) error {
	dst := filepath.Join(in.layout.BinDir, ExeName(in.o.GOOS, dockerCLIName))
	if found := lookPath(ExeName(in.o.GOOS, dockerCLIName), in.o.Getenv("PATH")); found != "" && !in.ours(found) && !sameFile(found, dst) {
		in.res.Unchanged++
		v := toolVersion(in.ctx, found, false)
		if v == "" {
			v = "version unknown"
		}
		fmt.Fprintf(in.o.Out, "  %-10s %s (docker %s, not berth's: berth's docker CLI is not installed; to let berth manage it, remove that one from your PATH and run berth install again)\n",
			"using", in.tilde(found), v)
		return nil
	}
	return in.installTool(src, dst, false)
}

// ours reports whether berth's install record has path (a file it wrote or a link it made).
func (in *installer) ours(path string) bool {
	if _, ok := in.m.find(KindFile, path, ""); ok {
		return true
	}
	_, ok := in.m.find(KindSymlink, path, "")
	return ok
}

// installTool puts src at dst: a copy, or a link into the package or app bundle when the
// binaries stay where a package put them (BinLink, BinKeep), so a package update updates
// them too. Something at dst that berth did not put there is kept and named.
func (in *installer) installTool(src, dst string, plugin bool) error {
	if _, err := os.Lstat(dst); err == nil && !in.ours(dst) {
		in.res.Unchanged++
		v := toolVersion(in.ctx, dst, plugin)
		if v == "" {
			v = "version unknown"
		}
		in.res.Warnings = append(in.res.Warnings, "kept "+dst)
		ours := toolVersion(in.ctx, src, plugin)
		if ours == "" {
			ours = src
		}
		fmt.Fprintf(in.o.Out, "  %-10s %s (%s, not berth's: left as it is; berth's is %s. To let berth manage it, remove it and run berth install again)\n",
			"kept", in.tilde(dst), v, ours)
		return nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if in.o.Binaries == BinLink || in.o.Binaries == BinKeep {
		// A file of ours from an earlier copy gives way to the link.
		if st, err := os.Lstat(dst); err == nil && st.Mode().IsRegular() {
			if err := os.Remove(dst); err != nil {
				return err
			}
		}
		return in.symlink(dst, src)
	}
	if _, err := os.Readlink(dst); err == nil && in.ours(dst) {
		// A link of ours from an earlier package install gives way to the copy.
		if err := os.Remove(dst); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", src, err)
	}
	return in.writeFile(dst, data, 0o755)
}

// lookPath finds name in the PATH list path (not the process's: Options.Getenv's).
func lookPath(name, path string) string {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && (st.Mode().Perm()&0o111 != 0 || strings.HasSuffix(name, ".exe")) {
			return p
		}
	}
	return ""
}
