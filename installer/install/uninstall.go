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
	// Data also deletes the berth root (~/.berth) as a whole: every instance with its data
	// disk (images, containers, volumes), and their docker contexts.
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
		return u.res, fmt.Errorf("%w (berth uninstall --data deletes %s anyway)", err, root)
	}
	if m == nil {
		m = &Manifest{}
	}

	var errs []error
	names, _ := store.List()
	for _, name := range names {
		inst := &store.Instance{Name: name, Dir: filepath.Join(root, name)}
		if err := u.stop(inst); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Removing binaries and contexts under a running VM would strand it.
		return u.res, errors.Join(errs...)
	}
	if o.Data {
		for _, name := range names {
			inst := &store.Instance{Name: name, Dir: filepath.Join(root, name)}
			if err := instance.Delete(ctx, inst, true, true); err != nil {
				errs = append(errs, fmt.Errorf("failed to delete instance %q: %w", name, err))
				continue
			}
			u.done("deleted", "instance "+name+" and its data ("+u.tilde(inst.Dir)+")")
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
		err := os.Remove(d)
		switch {
		case err == nil:
			u.done("removed", d)
		case errors.Is(err, fs.ErrNotExist):
		default:
			if entries, rerr := os.ReadDir(d); rerr == nil && len(entries) > 0 {
				fmt.Fprintf(o.Out, "  %-10s %s (it holds other files)\n", "kept", u.tilde(d))
			} else {
				errs = append(errs, fmt.Errorf("failed to remove %s: %w", d, err))
			}
		}
	}
	if o.Data {
		if _, err := os.Lstat(root); err == nil {
			if err := os.RemoveAll(root); err != nil {
				errs = append(errs, fmt.Errorf("failed to delete %s: %w", root, err))
			} else {
				u.done("deleted", root+" (every instance, its data disk and the guest images)")
			}
		}
	}
	return u.res, errors.Join(errs...)
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
