package guestagent

import (
	"fmt"
	"os"
	"sync"
)

// rotatingWriter is a size-bounded log file: when a write would take it past max it is
// renamed to path.1 (replacing the older one) and a fresh file started, so at most about
// 2×max is kept. Writes are serialised, so both daemons can share it. A reader that
// follows the file by an open descriptor keeps reading the renamed one after a rotation.
type rotatingWriter struct {
	path string
	max  int64

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
	failed bool // an error has been reported; later ones are silent
}

func openRotatingWriter(path string, max int64) (*rotatingWriter, error) {
	w := &rotatingWriter{path: path, max: max}
	if err := w.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *rotatingWriter) open(flag int) error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|flag, 0o644)
	if err != nil {
		return err
	}
	w.f, w.size = f, 0
	if st, err := f.Stat(); err == nil {
		w.size = st.Size()
	}
	return nil
}

// Write never fails: an error would end exec's copying goroutine, closing the pipe, and
// the daemon would die of SIGPIPE on its next log line. What cannot be written is dropped.
func (w *rotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return len(p), nil
	}
	if w.f != nil && w.size > 0 && w.size+int64(len(p)) > w.max {
		w.rotate()
	}
	if w.f == nil {
		if err := w.open(0); err != nil {
			w.report(err)
			return len(p), nil
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	if err != nil {
		w.report(err)
	}
	return len(p), nil
}

func (w *rotatingWriter) rotate() {
	w.f.Close()
	w.f = nil
	if err := os.Rename(w.path, w.path+".1"); err != nil {
		w.report(err)
	}
	// O_TRUNC: when the rename failed, the bound still holds.
	if err := w.open(os.O_TRUNC); err != nil {
		w.report(err)
	}
}

func (w *rotatingWriter) report(err error) {
	if !w.failed {
		w.failed = true
		fmt.Fprintf(os.Stderr, "engine log %s: %v; output dropped\n", w.path, err)
	}
}

// Close closes the file; later writes are dropped.
func (w *rotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
