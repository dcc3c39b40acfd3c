package fileshare

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Event is one host change to replay in the guest.
type Event struct {
	Path string `json:"path"`
	Op   string `json:"op"` // "write", "create", "remove", "rename"
}

// Limits of the watcher. A batch is sent at most every BatchDelay and carries at most
// MaxBatch paths (a checkout touching more than that is cut short: watchers in the guest
// still see the first MaxBatch changes and rescan).
const (
	BatchDelay = 50 * time.Millisecond
	MaxBatch   = 2000
	// DefaultMaxDirs bounds the inotify watches per instance: a home directory can hold
	// hundreds of thousands of directories, and each watch costs kernel memory.
	DefaultMaxDirs = 100000
)

// Watcher follows host changes under a set of share roots.
type Watcher struct {
	fs      *fsnotify.Watcher
	log     *slog.Logger
	maxDirs int
	dirs    int
	Capped  bool // true when maxDirs was reached and some directories are not watched
}

// Watch starts watching roots recursively and calls emit with batches of changes until ctx
// ends. Symlinks are never followed, so a link planted in a share cannot make the
// watcher look outside it. Attribute-only changes are ignored: they are what the guest's
// own replay produces, so nothing echoes back and forth.
func Watch(ctx context.Context, roots []string, maxDirs int, log *slog.Logger, emit func([]Event)) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{fs: fw, log: log, maxDirs: maxDirs}
	for _, r := range roots {
		w.addTree(r)
	}
	go w.loop(ctx, emit)
	return w, nil
}

// Dirs is the number of directories watched.
func (w *Watcher) Dirs() int { return w.dirs }

func (w *Watcher) addTree(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip, keep walking
		}
		if !d.IsDir() {
			return nil
		}
		if w.dirs >= w.maxDirs {
			if !w.Capped {
				w.Capped = true
				w.log.Warn("too many directories to watch; changes deeper in the tree are not notified", "limit", w.maxDirs, "at", p)
			}
			return filepath.SkipAll
		}
		if err := w.fs.Add(p); err != nil {
			w.log.Debug("cannot watch", "dir", p, "err", err)
			return nil
		}
		w.dirs++
		return nil
	})
}

func (w *Watcher) loop(ctx context.Context, emit func([]Event)) {
	defer w.fs.Close()
	pending := map[string]string{}
	var timer <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-w.fs.Errors:
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("host change queue overflowed; some changes were not notified")
			}
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			op := ""
			switch {
			case ev.Has(fsnotify.Create):
				op = "create"
				// New directories are watched too (WalkDir does not follow symlinks).
				w.addTree(ev.Name)
			case ev.Has(fsnotify.Write):
				op = "write"
			case ev.Has(fsnotify.Remove):
				op = "remove"
			case ev.Has(fsnotify.Rename):
				op = "rename"
			default:
				continue // Chmod: attribute changes, including the guest's own replays
			}
			if len(pending) < MaxBatch {
				if prev, ok := pending[ev.Name]; !ok || prev == "write" {
					pending[ev.Name] = op
				}
			}
			if timer == nil {
				timer = time.After(BatchDelay)
			}
		case <-timer:
			timer = nil
			batch := make([]Event, 0, len(pending))
			for p, op := range pending {
				batch = append(batch, Event{Path: p, Op: op})
			}
			sort.Slice(batch, func(i, j int) bool { return batch[i].Path < batch[j].Path })
			pending = map[string]string{}
			emit(batch)
		}
	}
}
