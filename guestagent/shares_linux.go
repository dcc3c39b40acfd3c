package guestagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

// ninePOptions: msize 512 KiB (the default 8 KiB makes every large read a thousand round
// trips); cache=mmap keeps the page cache coherent with host edits while allowing mmap;
// access=client lets the guest's permission checks apply to its own users.
const ninePOptions = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap,access=client"

var (
	sharesMu sync.Mutex
	shares   []string // mounted share paths, for notify containment
)

// mountShares mounts each share at its host path. Each mount succeeds or fails alone.
func (s *Server) mountShares(st *yamux.Stream, mounts []proto.Mount) error {
	results := make([]proto.MountResult, len(mounts))
	for i, m := range mounts {
		results[i].Path = m.Path
		if err := mountShare(m); err != nil {
			results[i].Error = err.Error()
			s.log.Error("share not mounted", "path", m.Path, "err", err)
			continue
		}
		sharesMu.Lock()
		shares = append(shares, m.Path)
		sharesMu.Unlock()
		s.log.Info("share mounted", "path", m.Path, "type", m.FSType, "readOnly", m.ReadOnly)
	}
	return proto.WriteJSONLine(st, proto.Response{Mounts: results})
}

func mountShare(m proto.Mount) error {
	if !filepath.IsAbs(m.Path) || filepath.Clean(m.Path) == "/" {
		return fmt.Errorf("bad mount point %q", m.Path)
	}
	if err := os.MkdirAll(m.Path, 0o755); err != nil {
		return err
	}
	var flags uintptr = unix.MS_NODEV
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	data := ""
	switch m.FSType {
	case "virtiofs":
	case "9p":
		data = ninePOptions
	default:
		return fmt.Errorf("unknown share type %q", m.FSType)
	}
	if err := unix.Mount(m.Tag, m.Path, m.FSType, flags, data); err != nil {
		return fmt.Errorf("mount -t %s %s %s: %w", m.FSType, m.Tag, m.Path, err)
	}
	return nil
}

// notify replays host changes so inotify fires in the guest. Setting only the mtime
// (atime untouched) makes the kernel report IN_MODIFY (fsnotify_change), without changing
// a byte of the file: a changed or created file gets IN_MODIFY under its own name; a
// removed or renamed one gets IN_MODIFY on its directory. The host ignores the attribute
// change this causes on its side, so nothing echoes.
func (s *Server) notify(ctx context.Context, st *yamux.Stream) error {
	if err := reply(st, nil); err != nil {
		return err
	}
	return proto.ReadLines(st, func(line []byte, err error) {
		var evs []proto.NotifyEvent
		if err != nil || jsonUnmarshal(line, &evs) != nil {
			s.log.Warn("bad notify batch from the host", "err", err)
			return
		}
		for _, ev := range evs {
			target := ev.Path
			if ev.Op == "remove" || ev.Op == "rename" {
				target = filepath.Dir(ev.Path)
			}
			if !inShare(target) {
				continue
			}
			ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_NOW}}
			// Never through a symlink: it could point anywhere in the guest.
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil && ev.Op != "remove" {
				s.log.Debug("notify replay failed", "path", target, "err", err)
			}
		}
	})
}

func inShare(p string) bool {
	sharesMu.Lock()
	defer sharesMu.Unlock()
	for _, root := range shares {
		if p == root || strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}
