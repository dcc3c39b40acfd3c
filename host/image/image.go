// Package image installs berth's guest image (kernel, initramfs, root image, manifest) into
// the per-user image store, `~/.berth/_images/<arch>/`: copied from a directory (a build
// output, a package's copy) or downloaded over https as a versioned bundle, a tar.gz whose
// sha256 comes from the berth build or the user, never from the server that serves it. Every install is atomic: the new image is written into a temporary
// directory beside the old one and renamed into place, so a crash or a corrupt bundle never
// leaves a half image where the daemon looks. See docs/install.md.
package image

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/berth-dev/berth/host/store"
)

// The files of an image. Kernel, initrd and root are required (Find checks the same
// three); the manifest describes them; rootfs.tar is the WSL2 driver's root and exists only
// in Windows images.
const (
	Kernel   = "vmlinuz"
	Initrd   = "initrd.img"
	Root     = "root.img"
	Manifest = "manifest.json"
	RootTar  = "rootfs.tar"
)

// Required are the files without which an image cannot boot.
var Required = []string{Kernel, Initrd, Root}

// known are every file name an image (and so a bundle) may hold.
var known = map[string]bool{Kernel: true, Initrd: true, Root: true, Manifest: true, RootTar: true}

// EnvURL names the bundle `berth start` downloads when no image is installed. `{arch}` in
// it is replaced by the guest architecture.
const EnvURL = "BERTH_IMAGE_URL"

// SystemImages is where Linux packages (.deb) put the image: /usr/share/berth/images/<arch>.
const SystemImages = "/usr/share/berth/images"

// Complete reports whether dir holds a bootable image (every Required file).
func Complete(dir string) bool {
	for _, f := range Required {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// UserDir is the per-user image directory for arch: <berth root>/_images/<arch>.
func UserDir(arch string) (string, error) {
	root, err := store.Root()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, store.ImagesDir, arch), nil
}

// SystemDirs are the read-only places an installed berth ships an image, in the order they
// are searched after the per-user directory:
//   - <exe>/../share/berth/images/<arch>: a prefix install (/usr/bin/berth from the .deb,
//     /usr/local/bin/berth, ~/.local/bin/berth);
//   - <exe>/image/<arch>: beside the binary, as in the macOS app bundle
//     (Berth.app/Contents/Resources/{berth,image/}) and the Windows install directory;
//   - /usr/share/berth/images/<arch> on Linux, for a berth binary started from elsewhere.
//
// The build output (_output/image beside _output/bin) is deliberately not here: a
// developer's image is installed with `berth install` or pointed at with BERTH_IMAGES.
func SystemDirs(arch string) []string {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		bin := filepath.Dir(exe)
		dirs = append(dirs,
			filepath.Join(bin, "..", "share", "berth", "images", arch),
			filepath.Join(bin, "image", arch))
	}
	if runtime.GOOS == "linux" {
		dirs = append(dirs, filepath.Join(SystemImages, arch))
	}
	for i, d := range dirs {
		dirs[i] = filepath.Clean(d)
	}
	return dirs
}

// FindSystem returns the first complete SystemDirs entry for arch, or "".
func FindSystem(arch string) string {
	for _, d := range SystemDirs(arch) {
		if Complete(d) {
			return d
		}
	}
	return ""
}

// Image is a guest image on disk.
type Image struct{ Dir, Kernel, Initrd, Root string }

// Dir is where the guest image for cfg.Arch is looked for, in this order: the config's
// images dir, $BERTH_IMAGES, the per-user directory (~/.berth/_images), then the read-only
// image an installed package ships (SystemDirs). chosen says the user named the place (the
// config or BERTH_IMAGES), so nothing else is searched or downloaded. docs/install.md
// lists the order.
func Dir(cfg store.Config) (dir string, chosen bool, err error) {
	if base := cmp.Or(cfg.Images, os.Getenv("BERTH_IMAGES")); base != "" {
		return filepath.Join(base, cfg.Arch), true, nil
	}
	dir, err = UserDir(cfg.Arch)
	if err != nil {
		return "", false, err
	}
	if !Complete(dir) {
		if sys := FindSystem(cfg.Arch); sys != "" {
			return sys, false, nil
		}
	}
	return dir, false, nil
}

// Find locates the guest image for cfg.Arch (see Dir) and checks that it is complete.
func Find(cfg store.Config) (Image, error) {
	dir, _, err := Dir(cfg)
	if err != nil {
		return Image{}, err
	}
	img := Image{Dir: dir, Kernel: filepath.Join(dir, Kernel), Initrd: filepath.Join(dir, Initrd), Root: filepath.Join(dir, Root)}
	for _, p := range []string{img.Kernel, img.Initrd, img.Root} {
		if _, err := os.Stat(p); err != nil {
			return img, fmt.Errorf("guest image for %s not found (%s is missing): install one with `berth install --image-url URL` (see docs/install.md), or point BERTH_IMAGES at a directory holding %s/", cfg.Arch, p, cfg.Arch)
		}
	}
	return img, nil
}

// EnsureFor runs before a start: when no image for cfg.Arch is found where the daemon looks
// and BERTH_IMAGE_URL is set, it downloads the bundle (https only, checked against
// BERTH_IMAGE_SHA256 or the checksum built into berth) into the per-user directory, showing
// progress on w. It does nothing when the config or BERTH_IMAGES names an image directory
// (the user chose it; the daemon reports what is missing) or when no URL is set.
func EnsureFor(ctx context.Context, cfg store.Config, w io.Writer) error {
	url := os.Getenv(EnvURL)
	if url == "" {
		return nil
	}
	dir, chosen, err := Dir(cfg)
	if err != nil || chosen || Complete(dir) {
		return err
	}
	fmt.Fprintf(w, "No guest image for %s is installed: downloading it from %s (%s)\n", cfg.Arch, ExpandURL(url, cfg.Arch), EnvURL)
	if _, err := store.EnsureRoot("berth (image download)"); err != nil {
		return err
	}
	if err := Fetch(ctx, FetchOptions{URL: url, SHA256: os.Getenv(EnvSHA256), Dir: filepath.Dir(dir), Arch: cfg.Arch, Progress: w}); err != nil {
		return fmt.Errorf("failed to download the guest image: %w", err)
	}
	return nil
}

// ManifestInfo is the part of an image's manifest.json that berth checks.
type ManifestInfo struct {
	Arch          string              `json:"arch"`
	KernelVersion string              `json:"kernelVersion"`
	Artifacts     map[string]Artifact `json:"artifacts"`
}

// Artifact is one file's checksum and size in the manifest.
type Artifact struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ReadManifest parses dir/manifest.json.
func ReadManifest(dir string) (ManifestInfo, error) {
	var m ManifestInfo
	b, err := os.ReadFile(filepath.Join(dir, Manifest))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("invalid %s: %w", filepath.Join(dir, Manifest), err)
	}
	return m, nil
}

// Same reports whether two image directories hold the same image. With manifests on both
// sides the manifests are compared byte for byte (they carry every artifact's sha256) and
// the sizes are checked; without, every file is compared by content.
func Same(a, b string) bool {
	if !Complete(a) || !Complete(b) {
		return false
	}
	ma, errA := os.ReadFile(filepath.Join(a, Manifest))
	mb, errB := os.ReadFile(filepath.Join(b, Manifest))
	if errA == nil && errB == nil {
		if string(ma) != string(mb) {
			return false
		}
		for _, f := range imageFiles(a) {
			sa, err1 := os.Stat(filepath.Join(a, f))
			sb, err2 := os.Stat(filepath.Join(b, f))
			if err1 != nil || err2 != nil || sa.Size() != sb.Size() {
				return false
			}
		}
		return len(imageFiles(a)) == len(imageFiles(b))
	}
	if (errA == nil) != (errB == nil) {
		return false
	}
	fa, fb := imageFiles(a), imageFiles(b)
	if len(fa) != len(fb) {
		return false
	}
	for _, f := range fa {
		ha, err1 := fileSHA256(filepath.Join(a, f))
		hb, err2 := fileSHA256(filepath.Join(b, f))
		if err1 != nil || err2 != nil || ha != hb {
			return false
		}
	}
	return true
}

// imageFiles lists the image files present in dir, in a fixed order.
func imageFiles(dir string) []string {
	var out []string
	for _, f := range []string{Kernel, Initrd, Root, Manifest, RootTar} {
		if st, err := os.Stat(filepath.Join(dir, f)); err == nil && st.Mode().IsRegular() {
			out = append(out, f)
		}
	}
	return out
}

// InstallFrom copies the image in src into dir/<arch> atomically (dir is the images root,
// ~/.berth/_images). src may be the arch directory itself or a root holding <arch>/. It
// returns false, and writes nothing, when the same image is already there.
func InstallFrom(src, dir, arch string) (bool, error) {
	if !Complete(src) && Complete(filepath.Join(src, arch)) {
		src = filepath.Join(src, arch)
	}
	if !Complete(src) {
		return false, fmt.Errorf("no guest image for %s in %s (it needs %s, %s and %s)", arch, src, Kernel, Initrd, Root)
	}
	if m, err := ReadManifest(src); err == nil && m.Arch != "" && m.Arch != arch {
		return false, fmt.Errorf("the image in %s is for %s, not %s", src, m.Arch, arch)
	}
	dest := filepath.Join(dir, arch)
	if Same(src, dest) {
		return false, nil
	}
	tmp, err := newStaging(dir, arch)
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	for _, f := range imageFiles(src) {
		if err := copyFile(filepath.Join(src, f), filepath.Join(tmp, f)); err != nil {
			return false, err
		}
	}
	if err := verifyDir(tmp, arch); err != nil {
		return false, fmt.Errorf("the image in %s is damaged: %w", src, err)
	}
	return true, swapIn(tmp, dest)
}

// newStaging creates an empty directory beside dir/<arch> for a new image.
func newStaging(dir, arch string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("failed to create %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(dir, "."+arch+".new-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// swapIn replaces dest with the staged directory tmp: the old image (if any) is renamed
// aside first, so dest is at every moment either the old image or the new one.
func swapIn(tmp, dest string) error {
	old := ""
	if _, err := os.Lstat(dest); err == nil {
		o, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".old-")
		if err != nil {
			return err
		}
		os.Remove(o) // only the unique name is wanted
		if err := os.Rename(dest, o); err != nil {
			return fmt.Errorf("failed to move the old image aside: %w", err)
		}
		old = o
	}
	if err := os.Rename(tmp, dest); err != nil {
		if old != "" {
			os.Rename(old, dest)
		}
		return fmt.Errorf("failed to install the image into %s: %w", dest, err)
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// verifyDir checks a staged image: the required files, the manifest's arch, and every
// artifact's size and sha256 the manifest lists.
func verifyDir(dir, arch string) error {
	for _, f := range Required {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("%s is missing", f)
		}
	}
	m, err := ReadManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if m.Arch != "" && m.Arch != arch {
		return fmt.Errorf("it is for %s, not %s", m.Arch, arch)
	}
	for name, a := range m.Artifacts {
		if !known[name] || filepath.Base(name) != name {
			continue
		}
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%s listed in the manifest is missing", name)
		}
		if a.Size != 0 && st.Size() != a.Size {
			return fmt.Errorf("%s is %d bytes, the manifest says %d", name, st.Size(), a.Size)
		}
		if a.SHA256 != "" {
			sum, err := fileSHA256(p)
			if err != nil {
				return err
			}
			if sum != a.SHA256 {
				return fmt.Errorf("%s has sha256 %s, the manifest says %s", name, sum, a.SHA256)
			}
		}
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFile copies src to dst (0644), keeping runs of zeros as holes: root.img is a mostly
// empty ext4 image.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeSparse(dst, in)
}

// writeSparse writes r to a new file at path, seeking over all-zero blocks instead of
// writing them, and syncs it.
func writeSparse(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var size int64
	for {
		n, rerr := fill(r, buf)
		if n > 0 {
			chunk := buf[:n]
			if allZero(chunk) {
				if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
					f.Close()
					return err
				}
			} else if _, err := f.Write(chunk); err != nil {
				f.Close()
				return err
			}
			size += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	// A trailing hole is only a seek: the size comes from Truncate.
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// fill reads until buf is full or r fails. Unlike io.ReadFull, a short read at the end is
// reported as io.EOF and anything else (a truncated tar's io.ErrUnexpectedEOF included) as
// the error it is.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
