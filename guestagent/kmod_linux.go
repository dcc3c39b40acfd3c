//go:build linux

package guestagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The initramfs carries a boot subset of the kernel's modules; the image builder lists
// the ones to load in moduleListPath. Everything else is loaded after the switch to the
// root image by the real modprobe, which has the full module tree.
const (
	moduleListPath = "/etc/berth/modules"
	modulesDir     = "/lib/modules"
)

// parseModuleList reads a module list: one module name per line, '#' starts a comment,
// blank lines are ignored. Names are normalised ('-' and '_' are the same to the kernel)
// and duplicates dropped, keeping the first position.
func parseModuleList(r io.Reader) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, f := range strings.Fields(line) {
			n := normModName(f)
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names, s.Err()
}

// normModName turns a module name or a module file path into the kernel's canonical name:
// "kernel/fs/ext4/ext4.ko.xz" → "ext4", "crc32c-generic" → "crc32c_generic".
func normModName(s string) string {
	s = filepath.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// modDep is one modules.dep entry.
type modDep struct {
	path string   // file path, relative to the modules dir unless absolute
	deps []string // canonical names of the modules it needs, in modules.dep order
}

// parseModulesDep reads modules.dep ("path: dep1 dep2 ...") into a map keyed by
// canonical module name.
func parseModulesDep(r io.Reader) (map[string]modDep, error) {
	out := map[string]modDep{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("malformed modules.dep line %q", line)
		}
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, normModName(d))
		}
		out[normModName(path)] = modDep{path: strings.TrimSpace(path), deps: deps}
	}
	return out, s.Err()
}

// parseModulesBuiltin reads modules.builtin (one module path per line) into a set of
// canonical names.
func parseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	out := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			out[normModName(line)] = true
		}
	}
	return out, s.Err()
}

// kmodDir returns /lib/modules/<release> for the running kernel. If that directory is
// missing but exactly one kernel's modules are present, that one is used: the image
// builder may name it differently from `uname -r`.
func kmodDir(root string) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("failed to read the kernel release: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	dir := filepath.Join(root, rel)
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return "", fmt.Errorf("no modules for kernel %s: %w", rel, err)
	}
	var dirs []string
	for _, e := range ents {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) == 1 {
		return filepath.Join(root, dirs[0]), nil
	}
	return "", fmt.Errorf("no modules for kernel %s in %s (found %v)", rel, root, dirs)
}

// moduleLoader loads modules with finit_module(2), resolving dependencies from
// modules.dep. It exists only in the initramfs, before any modprobe is available.
type moduleLoader struct {
	log     *slog.Logger
	dir     string
	dep     map[string]modDep
	builtin map[string]bool
	loaded  map[string]bool
	sysfs   string             // /sys/module
	finit   func(string) error // finitModule; replaced in tests
}

func newModuleLoader(log *slog.Logger, dir string) (*moduleLoader, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("failed to open modules.dep: %w", err)
	}
	defer f.Close()
	dep, err := parseModulesDep(f)
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", f.Name(), err)
	}
	builtin := map[string]bool{}
	if bf, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		builtin, err = parseModulesBuiltin(bf)
		bf.Close()
		if err != nil {
			return nil, fmt.Errorf("failed to parse modules.builtin: %w", err)
		}
	}
	return &moduleLoader{log: log, dir: dir, dep: dep, builtin: builtin, loaded: map[string]bool{}, sysfs: "/sys/module", finit: finitModule}, nil
}

// loadAll loads every listed module. Missing and built-in modules are skipped with a log
// line; the first load failure is returned after trying the rest, so one broken optional
// module does not hide which required one failed.
func (l *moduleLoader) loadAll(names []string) error {
	var errs []error
	for _, n := range names {
		err := l.load(n, 0)
		if errors.Is(err, unix.ENODEV) {
			// The hardware it drives is absent: crc32c_intel without SSE4.2 (TCG's
			// default CPU), a driver for a device this VM does not have.
			l.log.Info("module not usable on this machine; skipped", "module", n, "err", err)
			continue
		}
		if err != nil {
			l.log.Error("module load failed", "module", n, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *moduleLoader) load(name string, depth int) error {
	if l.loaded[name] {
		return nil
	}
	if depth > 32 {
		return fmt.Errorf("module %s: dependency chain too deep (cycle in modules.dep?)", name)
	}
	d, ok := l.dep[name]
	if !ok {
		if l.builtin[name] || l.isBuiltinSysfs(name) {
			l.log.Debug("module is built in", "module", name)
		} else {
			l.log.Info("module not in the initramfs; skipped", "module", name)
		}
		l.loaded[name] = true
		return nil
	}
	// modules.dep lists dependencies with the deepest last: load them back to front.
	for i := len(d.deps) - 1; i >= 0; i-- {
		if err := l.load(d.deps[i], depth+1); err != nil {
			return fmt.Errorf("dependency of %s: %w", name, err)
		}
	}
	path := d.path
	if !filepath.IsAbs(path) {
		path = filepath.Join(l.dir, path)
	}
	if err := l.finit(path); err != nil {
		return fmt.Errorf("failed to load module %s from %s: %w", name, path, err)
	}
	l.loaded[name] = true
	return nil
}

// isBuiltinSysfs: built-in modules with parameters show in /sys/module without an
// initstate file; loadable ones have it.
func (l *moduleLoader) isBuiltinSysfs(name string) bool {
	if _, err := os.Stat(filepath.Join(l.sysfs, name)); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(l.sysfs, name, "initstate"))
	return err != nil
}

// finitModule loads one module file. Compressed modules (.ko.xz/.ko.zst/.ko.gz) are handed
// to the kernel to decompress (MODULE_INIT_COMPRESSED_FILE, Linux 6.0+ built with
// CONFIG_MODULE_DECOMPRESS), which is how distributions that compress modules build
// their kernels. An already loaded module (EEXIST) is success.
func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if isCompressedModule(path) {
		flags |= unix.MODULE_INIT_COMPRESSED_FILE
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil && flags != 0 && errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (compressed module: the kernel may lack CONFIG_MODULE_DECOMPRESS)", err)
	}
	return err
}

func isCompressedModule(path string) bool {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(path, ext) {
			return true
		}
	}
	return false
}

// loadBootModules loads the initramfs module list. A missing list is not an error: a
// kernel with everything built in needs none.
func loadBootModules(log *slog.Logger) error {
	f, err := os.Open(moduleListPath)
	if errors.Is(err, os.ErrNotExist) {
		log.Info("no module list; loading no modules", "path", moduleListPath)
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open module list: %w", err)
	}
	names, err := parseModuleList(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("failed to read module list %s: %w", moduleListPath, err)
	}
	if len(names) == 0 {
		return nil
	}
	dir, err := kmodDir(modulesDir)
	if err != nil {
		return err
	}
	l, err := newModuleLoader(log, dir)
	if err != nil {
		return err
	}
	return l.loadAll(names)
}
