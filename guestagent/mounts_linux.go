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
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mount is unix.Mount with an error that names what failed.
func mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("failed to mount %s (%s) on %s: %w", source, fstype, target, err)
	}
	return nil
}

// mountKernelFS mounts /proc, /sys and /dev. It is idempotent: a file system already
// mounted there (EBUSY) is fine.
func mountKernelFS() error {
	for _, m := range []struct {
		fstype, target string
		flags          uintptr
		data           string
	}{
		{"proc", "/proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", unix.MS_NOSUID, "mode=0755"},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", m.target, err)
		}
		if mounted, _ := isMountPoint(m.target); mounted {
			continue
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("failed to mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	return nil
}

// isMountPoint compares a directory's device with its parent's; good enough for the
// fixed paths used here (it misses bind mounts of the same file system).
func isMountPoint(path string) (bool, error) {
	var st, pst unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(filepath.Clean(path)), &pst); err != nil {
		return false, err
	}
	return st.Dev != pst.Dev || st.Ino == pst.Ino, nil
}

// mountOverlayRoot mounts the read-only root image under a tmpfs overlay at newRoot.
func mountOverlayRoot(log *slog.Logger, rootDev string) error {
	for _, d := range []string{rootRO, rootRW, newRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	err := unix.Mount(rootDev, rootRO, "ext4", unix.MS_RDONLY, "")
	if err != nil {
		// A journal that needs recovery cannot be replayed on a read-only device; the
		// image is built clean, so skipping the journal loses nothing.
		log.Warn("mounting the root image failed; retrying without the journal", "err", err)
		if err2 := unix.Mount(rootDev, rootRO, "ext4", unix.MS_RDONLY, "noload"); err2 != nil {
			return fmt.Errorf("failed to mount root image %s: %w", rootDev, err)
		}
	}
	if err := mount("tmpfs", rootRW, "tmpfs", 0, "mode=0755"); err != nil {
		return err
	}
	for _, d := range []string{rootRW + "/upper", rootRW + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", rootRO, rootRW, rootRW)
	if err := mount("overlay", newRoot, "overlay", 0, opts); err != nil {
		return fmt.Errorf("%w (is the overlay module in the initramfs?)", err)
	}
	// /run comes up before the switch so the layers can be moved under it: after the
	// switch they stay reachable (/run/berth/rw/upper shows what the guest changed)
	// instead of hiding under the old root.
	run := newRoot + "/run"
	if err := os.MkdirAll(run, 0o755); err != nil {
		return fmt.Errorf("failed to create %s: %w", run, err)
	}
	if err := mount("tmpfs", run, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return err
	}
	for _, m := range []struct{ from, to string }{{rootRO, run + "/berth/root-ro"}, {rootRW, run + "/berth/rw"}} {
		if err := os.MkdirAll(m.to, 0o755); err == nil {
			err = unix.Mount(m.from, m.to, "", unix.MS_MOVE, "")
			if err != nil {
				log.Warn("failed to move an overlay layer", "from", m.from, "to", m.to, "err", err)
			}
		}
	}
	return nil
}

// switchRoot does what util-linux switch_root does: move the kernel file systems into
// the new root, free the initramfs, move the new root onto / and chroot into it.
func switchRoot(log *slog.Logger, dir string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		if err := os.MkdirAll(dir+m, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", dir+m, err)
		}
		if err := mount(m, dir+m, "", unix.MS_MOVE, ""); err != nil {
			return err
		}
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	freeInitramfs(log)
	if err := mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("failed to chroot into %s: %w", dir, err)
	}
	return os.Chdir("/")
}

// freeInitramfs deletes the initramfs files, which otherwise pin their RAM for the
// guest's life. It only ever touches a ramfs/tmpfs root and never crosses into another
// mount. The running binary stays usable: its inode lives while it is mapped, and
// /proc/self/exe still execs it.
func freeInitramfs(log *slog.Logger) {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return
	}
	if uint32(sfs.Type) != uint32(unix.RAMFS_MAGIC) && uint32(sfs.Type) != uint32(unix.TMPFS_MAGIC) {
		log.Warn("old root is not an initramfs; not deleting it", "fstype", fmt.Sprintf("%#x", sfs.Type))
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat("/", &st); err != nil {
		return
	}
	n := removeSameDev("/", st.Dev)
	log.Debug("initramfs freed", "removed", n)
}

// removeSameDev removes everything under dir that is on device dev, leaving mount points
// (and what is under them) alone. It returns how many entries it removed.
func removeSameDev(dir string, dev uint64) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			n += removeSameDev(p, dev)
			if unix.Rmdir(p) == nil {
				n++
			}
		} else if unix.Unlink(p) == nil {
			n++
		}
	}
	return n
}

// mountSystemFS mounts what a Debian userland and the engine expect, after the switch.
func mountSystemFS(log *slog.Logger) error {
	type m struct {
		fstype, target string
		flags          uintptr
		data           string
		optional       bool
	}
	const nsn = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	for _, x := range []m{
		{"tmpfs", "/tmp", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
		{"devpts", "/dev/pts", unix.MS_NOSUID | unix.MS_NOEXEC, "ptmxmode=0666,gid=5,mode=0620", false},
		{"tmpfs", "/dev/shm", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", false},
		{"mqueue", "/dev/mqueue", nsn, "", true},
		{"cgroup2", "/sys/fs/cgroup", nsn, "nsdelegate", false},
	} {
		if err := os.MkdirAll(x.target, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", x.target, err)
		}
		err := unix.Mount(x.fstype, x.target, x.fstype, x.flags, x.data)
		if err != nil && x.fstype == "cgroup2" {
			err = unix.Mount(x.fstype, x.target, x.fstype, x.flags, "")
		}
		if err != nil {
			if x.optional {
				log.Warn("optional mount failed", "target", x.target, "err", err)
				continue
			}
			return fmt.Errorf("failed to mount %s on %s: %w", x.fstype, x.target, err)
		}
	}
	// Docker's volume and bind propagation options need shared mounts; a plain init
	// leaves everything private.
	if err := mount("", "/", "", unix.MS_REC|unix.MS_SHARED, ""); err != nil {
		return err
	}
	// devtmpfs has no /dev/fd & co.; udev would create them (bash process substitution
	// and `docker run … > /dev/stdout` need them).
	for _, l := range []struct{ name, target string }{
		{"/dev/fd", "/proc/self/fd"},
		{"/dev/stdin", "/proc/self/fd/0"},
		{"/dev/stdout", "/proc/self/fd/1"},
		{"/dev/stderr", "/proc/self/fd/2"},
		{"/dev/ptmx", "pts/ptmx"},
	} {
		if _, err := os.Lstat(l.name); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(l.target, l.name); err != nil {
				log.Warn("failed to create symlink", "name", l.name, "err", err)
			}
		}
	}
	return os.MkdirAll("/run/berth", 0o755)
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	MountPoint string
	FSType     string
	Source     string
}

// parseMountinfo reads /proc/<pid>/mountinfo (see proc(5)).
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		f := strings.Fields(s.Text())
		// id parent major:minor root mountpoint options [optional...] - fstype source superopts
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			return out, fmt.Errorf("malformed mountinfo line %q", s.Text())
		}
		out = append(out, mountEntry{
			MountPoint: unescapeMountinfo(f[4]),
			FSType:     f[sep+1],
			Source:     unescapeMountinfo(f[sep+2]),
		})
	}
	return out, s.Err()
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, …).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountPrefixes hold the data disk and what the engine mounts from it.
var unmountPrefixes = []string{dataMount, "/var/lib/docker", "/var/lib/containerd", "/run/docker", "/run/containerd"}

// unmountOrder picks the mounts to take down at power off, children before parents:
// everything on or from the data disk and the host shares.
func unmountOrder(mounts []mountEntry) []mountEntry {
	var out []mountEntry
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		keep := m.FSType == "virtiofs" || m.FSType == "9p"
		for _, p := range unmountPrefixes {
			if m.MountPoint == p || strings.HasPrefix(m.MountPoint, p+"/") {
				keep = true
			}
		}
		if keep {
			out = append(out, m)
		}
	}
	return out
}
