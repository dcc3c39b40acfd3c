package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/image"
	"github.com/berth-dev/berth/host/localsock"
	"github.com/berth-dev/berth/host/store"
)

// DefaultDockerSock is the path tools that ignore docker contexts and DOCKER_HOST dial.
const DefaultDockerSock = "/var/run/docker.sock"

// Options for Install. Zero values mean the platform defaults.
type Options struct {
	// Prefix overrides the install prefix (DefaultPrefix); binaries go to <prefix>/bin.
	Prefix string
	// Exe is the berth binary to install (the running one); Tray the berth-tray beside it,
	// if there is one.
	Exe, Tray string
	// Binaries says how they get into <prefix>/bin: copied (BinCopy, the default), linked
	// (BinLink: from an app bundle, whose image and signature stay with it) or not at all
	// (BinKeep: a package manager's binary, which stays where it is and is updated there).
	Binaries string
	// Version is the berth version being installed (recorded in the manifest).
	Version string
	// Arch is the guest architecture whose image is installed (default: the host's).
	Arch string
	// ImageDir is an image directory to copy (the arch directory or a root holding
	// <arch>/); ImageURL a bundle to download. Without either, the build output beside Exe
	// (../image/<arch>) is copied when there is one.
	ImageDir, ImageURL string
	// ImageSHA256 is the sha256 of the ImageURL bundle; empty means the one built into
	// this berth (image.BundleSHA256). Without either a download is refused.
	ImageSHA256 string
	// Toolchain is the directory holding the docker toolchain berth ships
	// (cli-plugins/docker-compose, cli-plugins/docker-buildx, docker); empty: the one beside
	// Exe (ToolchainDirs). PluginDir is where the plugins go (default PluginDir()).
	Toolchain, PluginDir string
	// HTTPClient downloads the bundle (nil: image.Fetch's default client).
	HTTPClient *http.Client
	// Completions are the shell completion scripts by shell name (bash, zsh, fish).
	Completions map[string][]byte
	// StartAtLogin adds the OS's per-user startup entry for `berth start`.
	StartAtLogin bool
	// DockerSockLink links DockerSockPath (default /var/run/docker.sock) to the default
	// instance's socket. It needs root: Sudo runs a command with elevated rights when the
	// link cannot be created directly (nil: fail with the command to run).
	DockerSockLink bool
	DockerSockPath string
	Sudo           func(ctx context.Context, argv ...string) error
	// Systemctl is the systemctl binary to reload the user manager with after the unit
	// changes ("" skips it); Launchctl likewise on macOS.
	Systemctl, Launchctl string
	// Out receives one line per action.
	Out io.Writer
	// GOOS is runtime.GOOS; tests set it to check another OS's plan (only the pure parts).
	GOOS string
	// Getenv is os.Getenv.
	Getenv func(string) string
}

// Binaries modes.
const (
	BinCopy = ""
	BinLink = "link"
	BinKeep = "keep"
)

// Result says what Install did.
type Result struct {
	Changed   int // things written, replaced or created
	Unchanged int // things already as they should be
	Manifest  string
	Warnings  []string
}

type installer struct {
	ctx     context.Context
	o       Options
	home    string
	root    string // berth root (~/.berth)
	layout  Layout
	m       *Manifest
	res     Result
	changed bool // the manifest changed
}

func (o *Options) defaults() error {
	if o.GOOS == "" {
		o.GOOS = runtime.GOOS
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.DockerSockPath == "" {
		o.DockerSockPath = DefaultDockerSock
	}
	if o.Exe == "" {
		return errors.New("no berth binary to install")
	}
	return nil
}

// Install installs berth for the current user. It is idempotent: what is already in place
// is left alone and reported as unchanged, and the manifest is only rewritten when
// something changed.
func Install(ctx context.Context, o Options) (Result, error) {
	if err := o.defaults(); err != nil {
		return Result{}, err
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return Result{}, fmt.Errorf("failed to find the home directory: %w", err)
	}
	root, err := store.Root()
	if err != nil {
		return Result{}, err
	}
	in := &installer{ctx: ctx, o: o, home: home, root: root, layout: ComputeLayout(o.GOOS, home, o.Prefix, o.Getenv)}
	in.res.Manifest = filepath.Join(root, ManifestFile)
	if in.m, err = LoadManifest(in.res.Manifest); err != nil {
		return in.res, err
	}
	if in.m == nil {
		in.m = &Manifest{Format: 1}
	}
	// Refuse up front what would fail half-way.
	if o.ImageURL != "" && o.ImageDir == "" {
		url := image.ExpandURL(o.ImageURL, o.Arch)
		if _, err := image.CheckURL(url); err != nil {
			return in.res, err
		}
		if _, err := image.ExpectedSHA256(o.ImageSHA256, o.Arch, url); err != nil {
			return in.res, err
		}
	}
	if o.DockerSockLink {
		if err := in.checkSockLink(); err != nil {
			return in.res, err
		}
	}
	steps := []func() error{in.binaries, in.dockerToolchain, in.guestImage, in.completions, in.dockerContext}
	if o.StartAtLogin {
		steps = append(steps, in.startAtLogin)
	}
	if o.DockerSockLink {
		steps = append(steps, in.sockLink)
	}
	var errs []error
	for _, step := range steps {
		if err := step(); err != nil {
			errs = append(errs, err)
		}
	}
	// The record is written even after a failed step, so uninstall finds what did get in.
	if err := in.saveManifest(); err != nil {
		errs = append(errs, err)
	}
	return in.res, errors.Join(errs...)
}

// tilde shortens a path under HOME for messages.
func (in *installer) tilde(p string) string { return tilde(in.home, p) }

func tilde(home, p string) string {
	if home != "" && (p == home || strings.HasPrefix(p, home+string(filepath.Separator))) {
		return "~" + p[len(home):]
	}
	return p
}

func (in *installer) did(verb, path string) {
	in.res.Changed++
	fmt.Fprintf(in.o.Out, "  %-10s %s\n", verb, in.tilde(path))
}

func (in *installer) same(what, path string) {
	in.res.Unchanged++
	fmt.Fprintf(in.o.Out, "  %-10s %s%s\n", "unchanged", in.tilde(path), what)
}

func (in *installer) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	in.res.Warnings = append(in.res.Warnings, msg)
	fmt.Fprintf(in.o.Out, "  %-10s %s\n", "note", msg)
}

func (in *installer) record(it Item) {
	if in.m.add(it) {
		in.changed = true
	}
}

// mkdirAll creates dir and its missing parents, recording each one it created (outermost
// first) so uninstall can remove them again once they are empty.
func (in *installer) mkdirAll(dir string, mode os.FileMode) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("failed to create %s: %w", missing[i], err)
		}
		in.record(Item{Kind: KindDir, Path: missing[i]})
	}
	return nil
}

// ensureRoot creates the berth root with its marker (store.EnsureRoot) if it is missing,
// recording it and any parent it created.
func (in *installer) ensureRoot() error {
	if _, err := os.Lstat(in.root); err == nil {
		return nil
	}
	if err := in.mkdirAll(filepath.Dir(in.root), 0o700); err != nil {
		return err
	}
	if _, err := store.EnsureRoot("berth install"); err != nil {
		return err
	}
	in.record(Item{Kind: KindDir, Path: in.root})
	return nil
}

// writeFile writes data to path (through a temporary file and a rename) unless it already
// holds exactly that, and records the file.
func (in *installer) writeFile(path string, data []byte, mode os.FileMode) error {
	in.record(Item{Kind: KindFile, Path: path})
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode {
			in.same("", path)
			return nil
		}
	}
	if err := in.mkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := store.WriteFileAtomic(path, data, mode); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	in.did("installed", path)
	return nil
}

func (in *installer) binaries() error {
	type bin struct{ src, name string }
	bins := []bin{{in.o.Exe, "berth"}}
	if in.o.Tray != "" {
		bins = append(bins, bin{in.o.Tray, "berth-tray"})
	}
	if in.o.Binaries == BinKeep {
		fmt.Fprintf(in.o.Out, "  %-10s %s (installed by a package; it stays there)\n", "using", in.o.Exe)
		return nil
	}
	for _, b := range bins {
		dst := filepath.Join(in.layout.BinDir, ExeName(in.o.GOOS, b.name))
		if in.o.Binaries == BinLink {
			if err := in.symlink(dst, b.src); err != nil {
				return err
			}
			continue
		}
		if sameFile(b.src, dst) {
			// Running the installed binary itself: nothing to copy.
			in.record(Item{Kind: KindFile, Path: dst})
			in.same("", dst)
			continue
		}
		data, err := os.ReadFile(b.src)
		if err != nil {
			return fmt.Errorf("failed to read %s: %w", b.src, err)
		}
		if err := in.writeFile(dst, data, 0o755); err != nil {
			return err
		}
	}
	if in.o.GOOS == "windows" {
		// Windows keeps the user's PATH in the registry: add the bin directory there.
		changed, err := addUserPath(in.layout.BinDir)
		if err != nil {
			return fmt.Errorf("failed to add %s to your PATH: %w", in.layout.BinDir, err)
		}
		in.record(Item{Kind: KindUserPath, Path: in.layout.BinDir})
		if changed {
			in.did("added", in.layout.BinDir+" to your PATH (new terminals)")
		} else {
			in.same(" (on your PATH)", in.layout.BinDir)
		}
		return nil
	}
	if !onPath(in.layout.BinDir, in.o.Getenv("PATH")) {
		in.warn("%s is not on your PATH: add it (e.g. export PATH=\"%s:$PATH\" in your shell's profile)", in.tilde(in.layout.BinDir), in.layout.BinDir)
	}
	return nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

func onPath(dir, path string) bool {
	for _, p := range filepath.SplitList(path) {
		if filepath.Clean(p) == filepath.Clean(dir) {
			return true
		}
	}
	return false
}

// guestImage installs the image from --image-dir, --image-url, or the build output beside
// the binary; an image shipped with a package is used where it is.
func (in *installer) guestImage() error {
	arch := in.o.Arch
	imagesDir := filepath.Join(in.root, store.ImagesDir)
	dest := filepath.Join(imagesDir, arch)
	src := in.o.ImageDir
	if src == "" && in.o.ImageURL == "" {
		if real, err := filepath.EvalSymlinks(in.o.Exe); err == nil {
			if d := filepath.Join(filepath.Dir(real), "..", "image", arch); image.Complete(d) {
				src = filepath.Clean(d)
			}
		}
	}
	switch {
	case src != "":
		if err := in.ensureRoot(); err != nil {
			return err
		}
		if err := in.mkdirAll(imagesDir, 0o755); err != nil {
			return err
		}
		changed, err := image.InstallFrom(src, imagesDir, arch)
		if err != nil {
			return fmt.Errorf("failed to install the guest image: %w", err)
		}
		in.record(Item{Kind: KindImage, Path: dest, Source: src})
		if changed {
			in.did("installed", dest)
		} else {
			in.same(" (guest image)", dest)
		}
	case in.o.ImageURL != "":
		url := image.ExpandURL(in.o.ImageURL, arch)
		// https only, and a checksum from the user or this berth's build: never one served
		// beside the bundle.
		if _, err := image.CheckURL(url); err != nil {
			return err
		}
		sum, err := image.ExpectedSHA256(in.o.ImageSHA256, arch, url)
		if err != nil {
			return err
		}
		if it, ok := in.m.find(KindImage, dest, ""); ok && it.Source == url && it.SHA256 == sum && image.Complete(dest) {
			in.same(" (guest image from "+url+")", dest)
			return nil
		}
		if err := in.ensureRoot(); err != nil {
			return err
		}
		if err := in.mkdirAll(imagesDir, 0o755); err != nil {
			return err
		}
		if err := image.Fetch(in.ctx, image.FetchOptions{URL: url, SHA256: sum, Client: in.o.HTTPClient, Dir: imagesDir, Arch: arch, Progress: in.o.Out}); err != nil {
			return fmt.Errorf("failed to download the guest image: %w", err)
		}
		in.record(Item{Kind: KindImage, Path: dest, Source: url, SHA256: sum})
		in.did("installed", dest)
	case image.Complete(dest):
		// Already installed (by an earlier install, whose record of the source is kept).
		if _, ok := in.m.find(KindImage, dest, ""); !ok {
			in.record(Item{Kind: KindImage, Path: dest})
		}
		in.same(" (guest image)", dest)
	default:
		if sys := image.FindSystem(arch); sys != "" {
			fmt.Fprintf(in.o.Out, "  %-10s %s (guest image shipped with this berth)\n", "using", in.tilde(sys))
			return nil
		}
		in.warn("no guest image for %s found: run `berth install --image-url URL` (see docs/install.md), or --image-dir DIR for one you built; `berth start` also downloads one when %s is set", arch, image.EnvURL)
	}
	return nil
}

// CompletionHeader starts the comment line berth puts into every completion file it
// writes, so a later install recognises the file as its own even without the record.
const CompletionHeader = "# Generated by berth install"

// withHeader adds berth's header line to a completion script: first, or second after a
// zsh "#compdef" line (which must stay first).
func withHeader(shell string, script []byte) []byte {
	header := fmt.Sprintf("%s (berth completion %s); berth uninstall removes it.\n", CompletionHeader, shell)
	if bytes.Contains(script, []byte(CompletionHeader)) {
		return script
	}
	if bytes.HasPrefix(script, []byte("#compdef")) {
		first, rest, _ := bytes.Cut(script, []byte("\n"))
		return append(append(append(append([]byte(nil), first...), '\n'), header...), rest...)
	}
	return append([]byte(header), script...)
}

// hasHeader reports whether a completion file carries berth's header in its first lines.
func hasHeader(b []byte) bool {
	lines := bytes.SplitN(b, []byte("\n"), 4)
	if len(lines) > 3 {
		lines = lines[:3]
	}
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte(CompletionHeader)) {
			return true
		}
	}
	return false
}

// completions writes each shell's completion file where there is none, or where the file
// is berth's own (in the install record, or carrying berth's header). A file of the
// user's (or another package's) is kept, not recorded, and so never removed by uninstall.
func (in *installer) completions() error {
	for _, c := range []struct{ shell, path string }{
		{"bash", in.layout.Bash}, {"zsh", in.layout.Zsh}, {"fish", in.layout.Fish},
	} {
		script, ok := in.o.Completions[c.shell]
		if c.path == "" || !ok {
			continue
		}
		if old, err := os.ReadFile(c.path); err == nil {
			_, recorded := in.m.find(KindFile, c.path, "")
			if !recorded && !hasHeader(old) {
				in.res.Unchanged++
				in.res.Warnings = append(in.res.Warnings, "kept "+c.path)
				fmt.Fprintf(in.o.Out, "  %-10s %s (not berth's: left as it is; to use berth's, remove it and run berth install again, or run `berth completion %s > %s`)\n",
					"kept", in.tilde(c.path), c.shell, c.path)
				continue
			}
		} else if _, lerr := os.Lstat(c.path); lerr == nil {
			// Something unreadable (a dangling link, a directory): not ours to replace.
			in.res.Unchanged++
			fmt.Fprintf(in.o.Out, "  %-10s %s (not berth's: left as it is)\n", "kept", in.tilde(c.path))
			continue
		}
		if err := in.writeFile(c.path, withHeader(c.shell, script), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// dockerContext creates the `berth` context for the default instance, so `docker --context
// berth` works as soon as the instance runs; it points where the daemon's own context will
// (the unix socket, or the named pipe on Windows). The current context is not changed.
func (in *installer) dockerContext() error {
	name := dockerctx.Name(store.DefaultName)
	host, err := DockerHost(in.o.GOOS, in.root)
	if err != nil {
		return err
	}
	in.record(Item{Kind: KindDockerContext, Name: name})
	if cur, err := dockerctx.Host(name); err == nil && cur == host {
		in.res.Unchanged++
		fmt.Fprintf(in.o.Out, "  %-10s docker context %s → %s\n", "unchanged", name, host)
		return nil
	}
	cfgDir, err := dockerctx.ConfigDir()
	if err != nil {
		return err
	}
	// The directories the context store is made of, recorded if we create them.
	if err := in.mkdirAll(filepath.Join(cfgDir, "contexts", "meta"), 0o755); err != nil {
		return err
	}
	if err := dockerctx.Ensure(name, host, fmt.Sprintf("berth instance %q", store.DefaultName)); err != nil {
		return err
	}
	in.res.Changed++
	fmt.Fprintf(in.o.Out, "  %-10s docker context %s → %s\n", "created", name, host)
	return nil
}

// DockerHost is the docker endpoint of the default instance: unix://<root>/default/docker.sock,
// or on Windows the per-user named pipe the daemon serves (host/localsock names both).
func DockerHost(goos, root string) (string, error) {
	return localsock.DockerEndpoint(goos, store.DefaultName, filepath.Join(root, store.DefaultName, store.DockerSock))
}

// checkSockLink refuses a --docker-sock-link that would replace something not ours.
func (in *installer) checkSockLink() error {
	if in.o.GOOS == "windows" {
		return errors.New("--docker-sock-link is for macOS and Linux: on Windows the docker CLI reaches berth through its context")
	}
	link, target := in.o.DockerSockPath, in.sockTarget()
	st, err := os.Lstat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		if t, _ := os.Readlink(link); t == target {
			return nil
		}
		t, _ := os.Readlink(link)
		return fmt.Errorf("--docker-sock-link: %s already exists and points at %s, not berth: left alone (remove it yourself if you want berth's link there)", link, t)
	}
	what := "a file"
	if st.Mode()&fs.ModeSocket != 0 {
		what = "the socket of another Docker engine"
	}
	return fmt.Errorf("--docker-sock-link: %s already exists (%s): left alone; use the docker context %q or DOCKER_HOST=unix://%s instead", link, what, dockerctx.Name(store.DefaultName), target)
}

func (in *installer) sockTarget() string {
	return filepath.Join(in.root, store.DefaultName, store.DockerSock)
}

// sockLink creates the system-wide docker.sock link. It is never done silently: the
// output says it needs root, and sudo (which asks for a password) runs only when the user
// could not create it directly.
func (in *installer) sockLink() error {
	link, target := in.o.DockerSockPath, in.sockTarget()
	if t, err := os.Readlink(link); err == nil && t == target {
		in.record(Item{Kind: KindSymlink, Path: link, Target: target})
		in.same(" → "+in.tilde(target), link)
		return nil
	}
	fmt.Fprintf(in.o.Out, "  %-10s %s → %s: a system-wide link, it needs administrator rights\n", "linking", link, in.tilde(target))
	err := os.Symlink(target, link)
	if err != nil && errors.Is(err, fs.ErrPermission) {
		cmd := []string{"ln", "-s", target, link}
		if in.o.Sudo == nil {
			return fmt.Errorf("--docker-sock-link: no permission to create %s and no terminal to ask for a password: run\n    sudo %s\nthen `berth install --docker-sock-link` again to record it", link, strings.Join(cmd, " "))
		}
		fmt.Fprintf(in.o.Out, "  running: sudo %s\n", strings.Join(cmd, " "))
		err = in.o.Sudo(in.ctx, cmd...)
	}
	if err != nil {
		return fmt.Errorf("failed to link %s to %s: %w", link, target, err)
	}
	in.record(Item{Kind: KindSymlink, Path: link, Target: target})
	in.did("linked", link)
	if in.o.GOOS == "linux" {
		in.warn("%s is on a tmpfs on most Linux systems: the link is gone after a reboot (run `berth install --docker-sock-link` again)", filepath.Dir(link))
	}
	return nil
}

func (in *installer) startAtLogin() error {
	bin := filepath.Join(in.layout.BinDir, ExeName(in.o.GOOS, "berth"))
	switch in.o.GOOS {
	case "linux":
		before := in.res.Changed
		if err := in.writeFile(in.layout.Systemd, []byte(SystemdUnit(bin)), 0o644); err != nil {
			return err
		}
		// What `systemctl --user enable` does for WantedBy=default.target, done here so it
		// works (and is recorded) without a running user manager.
		if err := in.symlink(in.layout.SystemdWants, filepath.Join("..", SystemdUnitName)); err != nil {
			return err
		}
		in.record(Item{Kind: KindLoginItem, Path: in.layout.Systemd})
		if in.o.Systemctl != "" && in.res.Changed != before {
			if err := runQuiet(in.ctx, in.o.Systemctl, "--user", "daemon-reload"); err != nil {
				in.warn("systemctl --user daemon-reload failed (%v): the unit is enabled and takes effect at the next login", err)
			}
		}
	case "darwin":
		logPath := filepath.Join(in.root, "login.log")
		if err := in.writeFile(in.layout.Launchd, []byte(LaunchdPlist(bin, logPath)), 0o644); err != nil {
			return err
		}
		in.record(Item{Kind: KindFile, Path: logPath})
		in.record(Item{Kind: KindLoginItem, Path: in.layout.Launchd, Name: LaunchdLabel})
	case "windows":
		it := Item{Kind: KindRegistry, Path: `HKCU\` + RunKey, Name: RunValue, Target: WindowsRunCommand(bin)}
		changed, err := setRunValue(RunValue, it.Target)
		if err != nil {
			return fmt.Errorf("failed to add the startup entry: %w", err)
		}
		in.record(it)
		if changed {
			in.did("added", it.Path+`\`+it.Name)
		} else {
			in.same("", it.Path+`\`+it.Name)
		}
	default:
		return fmt.Errorf("--start-at-login is not supported on %s", in.o.GOOS)
	}
	return nil
}

// symlink makes link point at target (replacing a link that points elsewhere, never a
// file) and records it.
func (in *installer) symlink(link, target string) error {
	in.record(Item{Kind: KindSymlink, Path: link, Target: target})
	if t, err := os.Readlink(link); err == nil && t == target {
		in.same("", link)
		return nil
	} else if err == nil {
		os.Remove(link)
	} else if _, err := os.Lstat(link); err == nil {
		return fmt.Errorf("%s exists and is not a link: left alone", link)
	}
	if err := in.mkdirAll(filepath.Dir(link), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(target, link); err != nil {
		return err
	}
	in.did("linked", link)
	return nil
}

func (in *installer) saveManifest() error {
	if !in.changed {
		if _, err := os.Stat(in.res.Manifest); err == nil {
			return nil
		}
	}
	if err := in.ensureRoot(); err != nil {
		return err
	}
	in.m.Berth = in.o.Version
	in.m.Prefix = in.layout.Prefix
	in.record(Item{Kind: KindFile, Path: in.res.Manifest})
	if err := store.WriteFileAtomic(in.res.Manifest, in.m.marshal(), 0o600); err != nil {
		return fmt.Errorf("failed to write the install record: %w", err)
	}
	return nil
}
