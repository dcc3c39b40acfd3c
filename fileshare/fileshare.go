// Package fileshare defines the host directories an instance shares with its VM: their
// validation, the device each driver uses for them, and the host→guest change
// notification. A share appears in the guest at the same absolute path as on the host, so
// `docker run -v "$PWD":/src` works unchanged.
package fileshare

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Share is one shared directory, as configured in berth.yaml.
type Share struct {
	Path     string `yaml:"path" json:"path"`
	ReadOnly bool   `yaml:"readOnly,omitempty" json:"readOnly,omitempty"`
	// NoNotify turns off host→guest change notification for this share.
	NoNotify bool `yaml:"noNotify,omitempty" json:"noNotify,omitempty"`
}

// Default is what Docker Desktop shares on this OS, writable (defaults.go).
func Default() []Share {
	home, _ := os.UserHomeDir()
	return DefaultFor(runtime.GOOS, home)
}

// systemDirs may never be shared: exposing them to containers writable (or at all) is a
// way to break or own the host, and mounting them at the same path would hide the guest's
// own system.
var systemDirs = []string{
	"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
	"/run", "/sbin", "/sys", "/usr", "/var", "/opt", "/srv", "/tmp",
	// macOS
	// (/private and /Volumes are Docker Desktop's default shares there: they hold no
	// directory of the Linux guest, so they may be shared, though /private/etc may not.)
	"/System", "/Library", "/Applications", "/private/etc", "/private/var", "/cores",
}

// Validate checks a share list before boot: absolute existing directories, no system
// directory, no duplicates or overlaps.
func Validate(shares []Share) error {
	var errs []error
	clean := make([]string, len(shares))
	for i, s := range shares {
		p := filepath.Clean(s.Path)
		clean[i] = p
		if !filepath.IsAbs(s.Path) {
			errs = append(errs, fmt.Errorf("share %q: not an absolute path", s.Path))
			continue
		}
		if strings.ContainsAny(p, "\x00\n") {
			errs = append(errs, fmt.Errorf("share %q: the path contains a NUL or newline", s.Path))
			continue
		}
		for _, sys := range systemDirs {
			if p == sys {
				errs = append(errs, fmt.Errorf("share %q: a system directory cannot be shared; share a directory inside your home instead", s.Path))
			}
		}
		st, err := os.Stat(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("share %q: %w", s.Path, err))
		case !st.IsDir():
			errs = append(errs, fmt.Errorf("share %q: not a directory", s.Path))
		}
	}
	for i := range clean {
		for j := i + 1; j < len(clean); j++ {
			a, b := clean[i], clean[j]
			switch {
			case a == b:
				errs = append(errs, fmt.Errorf("share %q is listed twice", shares[i].Path))
			case within(a, b) || within(b, a):
				errs = append(errs, fmt.Errorf("shares %q and %q overlap: share only the outer one", shares[i].Path, shares[j].Path))
			}
		}
	}
	return errors.Join(errs...)
}

// within reports whether p is inside dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Tag is the device tag of the i-th share (virtiofs allows 36 bytes, 9p 31).
func Tag(i int) string { return fmt.Sprintf("berth%d", i) }
