package fileshare

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
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
	// Written by the watch loop, read by the API: atomic.
	dirs   atomic.Int64
	capped atomic.Bool // maxDirs was reached and some directories are not watched
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
func (w *Watcher) Dirs() int { return int(w.dirs.Load()) }

// Capped reports whether some directories are not watched (maxDirs was reached).
func (w *Watcher) Capped() bool { return w.capped.Load() }

func (w *Watcher) addTree(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip, keep walking
		}
		if !d.IsDir() {
			return nil
		}
		if int(w.dirs.Load()) >= w.maxDirs {
			if !w.capped.Swap(true) {
				w.log.Warn("too many directories to watch; changes deeper in the tree are not notified", "limit", w.maxDirs, "at", p)
			}
			return filepath.SkipAll
		}
		w.addDir(p)
		return nil
	})
}

// watchAdded is called right after a watch was added (tests swap the directory there).
var watchAdded = func(string) {}

// addDir watches directory p. inotify follows a symlink, so a directory swapped for a
// link between the walk's check and the watch would be watched wherever the link points:
// p is checked again after the watch, which is dropped unless p is still the directory
// the walk saw.
func (w *Watcher) addDir(p string) {
	before, err := os.Lstat(p)
	if err != nil || !before.IsDir() {
		return
	}
	if err := w.fs.Add(p); err != nil {
		w.log.Debug("cannot watch", "dir", p, "err", err)
		return
	}
	watchAdded(p)
	after, err := os.Lstat(p)
	target, terr := os.Stat(p)
	if err != nil || terr != nil || !after.IsDir() || !os.SameFile(before, after) || !os.SameFile(after, target) {
		w.fs.Remove(p)
		w.log.Warn("a directory was swapped during its watch; not watching it", "dir", p)
		return
	}
	w.dirs.Add(1)
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
