package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/host/dockerctx"
	"github.com/berth-dev/berth/host/instance"
	"github.com/berth-dev/berth/host/store"
)

// UninstallOptions for Uninstall.
type UninstallOptions struct {
	// Data also deletes berth's data in its root (~/.berth): every instance with its data
	// disk (images, containers, volumes), their docker contexts, the guest images, and
	// the root itself once nothing else is in it. Only what berth created goes: a root
	// without berth's marker that holds anything else is refused (see planRoot).
	Data bool
	Out  io.Writer
	// Sudo removes the /var/run/docker.sock link when the user cannot (see Options.Sudo).
	Sudo                 func(ctx context.Context, argv ...string) error
	Systemctl, Launchctl string
	// StopTimeout bounds the graceful stop of each running instance (default 3 minutes);
	// after it the instance is stopped by force.
	StopTimeout time.Duration
}

// Uninstall stops every running instance and removes what the install record lists,
// leaving the user's other docker contexts and settings alone; if the current docker
// context was berth's, the docker CLI is switched back to its default. Directories install
// created are removed once empty. It is idempotent: a second run finds nothing to remove.
func Uninstall(ctx context.Context, o UninstallOptions) (Result, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 3 * time.Minute
	}
	home, _ := os.UserHomeDir()
	u := &uninstaller{ctx: ctx, o: o, home: home}
	root, err := store.Root()
	if err != nil {
		return u.res, err
	}
	u.res.Manifest = filepath.Join(root, ManifestFile)
	m, err := LoadManifest(u.res.Manifest)
	if err != nil && !o.Data {
		return u.res, fmt.Errorf("%w (berth uninstall --data deletes berth's data in %s anyway)", err, root)
	}
	if m == nil {
		m = &Manifest{}
	}

	// With --data, decide first what in the root is berth's: a root that is not berth's
	// (no marker, and entries berth never creates) is refused before anything changes.
	var plan *rootPlan
	if o.Data {
		if plan, err = planRoot(root); err != nil {
			return u.res, err
		}
	}

	var errs []error
	names, _ := store.List()
	for _, name := range names {
		dir := filepath.Join(root, name)
		if !isInstanceDir(dir) {
			continue
		}
		inst := &store.Instance{Name: name, Dir: dir}
		if err := u.stop(inst); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Removing binaries and contexts under a running VM would strand it.
		return u.res, errors.Join(errs...)
	}
	if plan != nil {
		for _, name := range plan.instances {
			if err := u.deleteInstance(root, name); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// Undo in dependency order: start-at-login and links first, directories last.
	for _, kind := range []string{KindLoginItem, KindRegistry, KindUserPath, KindSymlink, KindDockerContext, KindFile, KindImage} {
		for _, it := range m.Items {
			if it.Kind != kind {
				continue
			}
			if err := u.remove(it); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := os.Remove(u.res.Manifest); err == nil {
		u.done("removed", u.res.Manifest)
	}
	var dirs []string
	for _, it := range m.Items {
		if it.Kind == KindDir {
			dirs = append(dirs, it.Path)
		}
	}
	// Deepest first, so a parent is tried after its children.
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], string(filepath.Separator)) > strings.Count(dirs[j], string(filepath.Separator))
	})
	for _, d := range dirs {
		if o.Data && isWithin(d, root) {
			continue // goes with the root below
		}
		if d == root {
			// The root install made goes once it holds nothing but berth's marker.
			if entries, err := os.ReadDir(root); err == nil && len(entries) == 1 && entries[0].Name() == store.HomeMarker {
				os.Remove(filepath.Join(root, store.HomeMarker))
			}
		}
		u.removeDir(d, &errs)
	}
	if plan != nil {
		u.cleanRoot(root, &errs)
	}
	return u.res, errors.Join(errs...)
}

// removeDir removes an empty directory install created; one that holds other files is
// kept, and said so.
func (u *uninstaller) removeDir(d string, errs *[]error) {
	err := os.Remove(d)
	switch {
	case err == nil:
		u.done("removed", d)
	case errors.Is(err, fs.ErrNotExist):
	default:
		if entries, rerr := os.ReadDir(d); rerr == nil && len(entries) > 0 {
			fmt.Fprintf(u.o.Out, "  %-10s %s (it holds other files)\n", "kept", u.tilde(d))
		} else {
			*errs = append(*errs, fmt.Errorf("failed to remove %s: %w", d, err))
		}
	}
}

// Entries berth creates in its root, besides instance directories.
var rootFiles = map[string]bool{
	store.HomeMarker: true, ManifestFile: true, store.ImagesDir: true,
	"tray.json": true, "login.log": true,
}

// Entries berth creates in an instance directory.
var instanceFiles = map[string]bool{
	store.ConfigFile: true, store.StateFile: true, store.PIDFile: true, store.ControlSock: true,
	store.DockerSock: true, store.HostdLog: true, store.ConsoleLog: true, store.DataDisk: true,
	store.RuntimeDir: true, store.FormatFile: true, store.OpLockFile: true,
	"registry": true, // the local registry's CA (host/registry)
}

// isTemp matches store.WriteFileAtomic's temporary files (".NAME.tmp123"), left by a crash.
func isTemp(name string, known map[string]bool) bool {
	base, _, ok := strings.Cut(strings.TrimPrefix(name, "."), ".tmp")
	return ok && strings.HasPrefix(name, ".") && known[base]
}

// isInstanceDir reports whether dir is an instance berth made: it holds the config or the
// data disk berth writes there.
func isInstanceDir(dir string) bool {
	for _, f := range []string{store.ConfigFile, store.DataDisk} {
		if st, err := os.Lstat(filepath.Join(dir, f)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// foreignIn lists the entries of an instance directory that berth did not create.
func foreignIn(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if !instanceFiles[e.Name()] && !isTemp(e.Name(), instanceFiles) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// rootPlan is what `uninstall --data` deletes in the root.
type rootPlan struct {
	instances []string // instance names
	foreign   []string // paths berth did not create: kept
}

// planRoot sorts the root's entries into berth's and others'. A root with the marker is
// berth's: its other entries are kept. A root without it (made before markers, or a
// directory BERTH_HOME merely points at) is berth's only if everything in it is.
func planRoot(root string) (*rootPlan, error) {
	p := &rootPlan{}
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name, path := e.Name(), filepath.Join(root, e.Name())
		switch {
		case rootFiles[name] || isTemp(name, rootFiles):
		case e.IsDir() && store.ValidName(name) == nil && isInstanceDir(path):
			p.instances = append(p.instances, name)
			p.foreign = append(p.foreign, foreignIn(path)...)
		default:
			p.foreign = append(p.foreign, path)
		}
	}
	if len(p.foreign) > 0 && !store.HasMarker(root) {
		if len(p.foreign) > 5 {
			p.foreign = append(p.foreign[:5], fmt.Sprintf("and %d more", len(p.foreign)-5))
		}
		return nil, fmt.Errorf("refusing to delete data in %s: berth did not create it (it has no %s) and it holds things berth did not put there:\n    %s\n"+
			"Nothing was changed. Move those elsewhere and run `berth uninstall --data` again, or delete berth's instances one by one with `berth delete --data NAME` and run `berth uninstall` without --data",
			root, store.HomeMarker, strings.Join(p.foreign, "\n    "))
	}
	return p, nil
}

// deleteInstance removes an instance's docker context and the files berth keeps in its
// directory (the data disk with every image, container and volume included); anything
// else there stays, and so does the directory then.
func (u *uninstaller) deleteInstance(root, name string) error {
	dir := filepath.Join(root, name)
	if err := dockerctx.Remove(dockerctx.Name(name)); err != nil {
		return fmt.Errorf("failed to remove the docker context of instance %q: %w", name, err)
	}
	var errs []error
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if instanceFiles[e.Name()] || isTemp(e.Name(), instanceFiles) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("failed to delete instance %q: %w", name, errors.Join(errs...))
	}
	if left := foreignIn(dir); len(left) > 0 {
		u.done("deleted", "instance "+name+" and its data; kept "+u.tilde(dir)+" for what berth did not put there")
		return nil
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to delete instance %q: %w", name, err)
	}
	u.done("deleted", "instance "+name+" and its data ("+u.tilde(dir)+")")
	return nil
}

// cleanRoot removes what berth keeps in its root (the images, its settings and logs, the
// marker last) and then the root if nothing else is left; everything else is named and kept.
func (u *uninstaller) cleanRoot(root string, errs *[]error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	var kept []string
	for _, e := range entries {
		name, path := e.Name(), filepath.Join(root, e.Name())
		switch {
		case name == store.HomeMarker:
		case rootFiles[name] || isTemp(name, rootFiles):
			if err := os.RemoveAll(path); err != nil {
				*errs = append(*errs, fmt.Errorf("failed to delete %s: %w", path, err))
			} else if name == store.ImagesDir {
				u.done("deleted", path+" (the guest images)")
			}
		default:
			kept = append(kept, path)
		}
	}
	if len(kept) > 0 {
		for _, k := range kept {
			fmt.Fprintf(u.o.Out, "  %-10s %s (not berth's)\n", "kept", u.tilde(k))
		}
		fmt.Fprintf(u.o.Out, "  %-10s %s (it holds files berth did not create)\n", "kept", u.tilde(root))
		return
	}
	os.Remove(filepath.Join(root, store.HomeMarker))
	if err := os.Remove(root); err != nil && !errors.Is(err, fs.ErrNotExist) {
		*errs = append(*errs, fmt.Errorf("failed to delete %s: %w", root, err))
		return
	}
	u.done("deleted", root)
}

type uninstaller struct {
	ctx  context.Context
	o    UninstallOptions
	home string
	res  Result
}

func (u *uninstaller) tilde(p string) string { return tilde(u.home, p) }

func (u *uninstaller) done(verb, what string) {
	u.res.Changed++
	fmt.Fprintf(u.o.Out, "  %-10s %s\n", verb, u.tilde(what))
}

func isWithin(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// stop stops a running instance: gracefully within StopTimeout, else by force.
func (u *uninstaller) stop(inst *store.Instance) error {
	if inst.DaemonPID() == 0 {
		return nil
	}
	fmt.Fprintf(u.o.Out, "  %-10s instance %s\n", "stopping", inst.Name)
	ctx, cancel := context.WithTimeout(u.ctx, u.o.StopTimeout)
	err := instance.Stop(ctx, inst, false)
	cancel()
	if err != nil && inst.DaemonPID() != 0 {
		fmt.Fprintf(u.o.Out, "  graceful stop failed (%v): forcing\n", err)
		ctx, cancel := context.WithTimeout(u.ctx, time.Minute)
		defer cancel()
		if err := instance.Stop(ctx, inst, true); err != nil && inst.DaemonPID() != 0 {
			return fmt.Errorf("failed to stop instance %q: %w", inst.Name, err)
		}
	}
	u.done("stopped", "instance "+inst.Name)
	return nil
}

func (u *uninstaller) remove(it Item) error {
	switch it.Kind {
	case KindFile:
		err := removeFile(it.Path)
		if err == nil {
			u.done("removed", it.Path)
			return nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("failed to remove %s: %w", it.Path, err)
	case KindImage:
		if _, err := os.Lstat(it.Path); err != nil {
			return nil
		}
		if err := os.RemoveAll(it.Path); err != nil {
			return fmt.Errorf("failed to remove the guest image %s: %w", it.Path, err)
		}
		u.done("removed", it.Path+" (guest image)")
	case KindSymlink:
		t, err := os.Readlink(it.Path)
		if err != nil {
			return nil
		}
		if t != it.Target {
			fmt.Fprintf(u.o.Out, "  %-10s %s (it now points at %s, not berth)\n", "kept", it.Path, t)
			return nil
		}
		err = os.Remove(it.Path)
		if err != nil && errors.Is(err, fs.ErrPermission) {
			if u.o.Sudo == nil {
				return fmt.Errorf("no permission to remove %s and no terminal to ask for a password: run\n    sudo rm %s", it.Path, it.Path)
			}
			fmt.Fprintf(u.o.Out, "  %s is system-wide: removing it needs administrator rights\n  running: sudo rm %s\n", it.Path, it.Path)
			err = u.o.Sudo(u.ctx, "rm", it.Path)
		}
		if err != nil {
			return fmt.Errorf("failed to remove %s: %w", it.Path, err)
		}
		u.done("removed", it.Path)
	case KindDockerContext:
		host, err := dockerctx.Host(it.Name)
		if err != nil || host == "" {
			return err
		}
		if err := dockerctx.Remove(it.Name); err != nil {
			return fmt.Errorf("failed to remove the docker context %s: %w", it.Name, err)
		}
		u.done("removed", "docker context "+it.Name)
	case KindUserPath:
		removed, err := removeUserPath(it.Path)
		if err != nil {
			return fmt.Errorf("failed to remove %s from your PATH: %w", it.Path, err)
		}
		if removed {
			u.done("removed", it.Path+" from your PATH")
		}
	case KindLoginItem:
		return u.removeLogin(it)
	case KindRegistry:
		removed, err := deleteRunValue(it.Name)
		if err != nil {
			return fmt.Errorf("failed to remove the startup entry %s\\%s: %w", it.Path, it.Name, err)
		}
		if removed {
			u.done("removed", it.Path+`\`+it.Name)
		}
	}
	return nil
}

// removeLogin unloads a start-at-login entry. A systemd unit's link and file are removed
// here (they are also symlink and file items, which then find nothing) so that the user
// manager can be reloaded after they are gone.
func (u *uninstaller) removeLogin(it Item) error {
	switch {
	case it.Name == LaunchdLabel:
		if u.o.Launchctl != "" {
			// Unload it if loaded; bootout of an agent that is not loaded fails, which is fine.
			runQuiet(u.ctx, u.o.Launchctl, "bootout", fmt.Sprintf("gui/%d/%s", os.Getuid(), LaunchdLabel))
		}
	case strings.HasSuffix(it.Path, ".service"):
		wants := filepath.Join(filepath.Dir(it.Path), "default.target.wants", filepath.Base(it.Path))
		if t, err := os.Readlink(wants); err == nil && t == filepath.Join("..", filepath.Base(it.Path)) {
			if os.Remove(wants) == nil {
				u.done("removed", wants)
			}
		}
		if removeFile(it.Path) == nil {
			u.done("removed", it.Path)
		}
		if u.o.Systemctl != "" {
			runQuiet(u.ctx, u.o.Systemctl, "--user", "daemon-reload")
		}
	}
	return nil
}
