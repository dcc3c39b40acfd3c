package guestagent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"time"
)

// The daemons write straight into engine.log (no pipe through the serve process: they
// outlive it, and a pipe whose reader died would kill them with SIGPIPE). The file is
// opened with O_APPEND, so after a copy-truncate every writer, including those started
// by an earlier serve process and their descendants, goes on at the new end.

// openEngineLog opens path for the daemons' stdout and stderr.
func openEngineLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// capLoop bounds the log at path until ctx ends: at once, and then within every interval
// of a write to it, a log past max is cut by capLog. Writes are seen through inotify
// (watchWrites), so an engine that writes nothing (an idle guest) costs no wake-up; where
// the log cannot be watched it is checked every interval, as before.
func capLoop(ctx context.Context, path string, max int64, every time.Duration, log *slog.Logger) {
	failed := false
	check := func() {
		if _, err := capLog(path, max); err != nil && !failed {
			failed = true // reported once; the next success re-arms it
			log.Warn("failed to cap the engine log", "path", path, "err", err)
		} else if err == nil {
			failed = false
		}
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		// Watched first, checked second: no write falls between the two unseen.
		writes, stop, err := watchWrites(path)
		check()
		if err != nil {
			if !wait(every) {
				return
			}
			continue
		}
		for open := true; open; {
			select {
			case <-ctx.Done():
				stop()
				return
			case _, open = <-writes:
			}
			// One check per interval however much is written: the writes of the
			// interval are seen by the check at its end.
			if open && !wait(every) {
				stop()
				return
			}
			check()
		}
		stop() // the file was removed or replaced: watch the new one
	}
}

// capLog copies the newest max bytes (from the first whole line) of a log that is
// larger than max to path.1, replacing it, and truncates path to 0, so at most about
// 2×max is kept between two checks. What is written between the copy and the truncation
// is lost. It reports whether it cut the log.
func capLog(path string, max int64) (bool, error) {
	st, err := os.Stat(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Size() <= max {
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	off := st.Size() - max
	head := make([]byte, 4<<10)
	n, _ := f.ReadAt(head, off)
	if i := bytes.IndexByte(head[:n], '\n'); i >= 0 {
		off += int64(i) + 1
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return false, err
	}
	tmp := path + ".1.tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false, err
	}
	_, cerr := io.Copy(out, io.LimitReader(f, max))
	// Truncate even when the copy failed: the bound matters more than the old lines.
	terr := f.Truncate(0)
	if err := out.Close(); cerr == nil {
		cerr = err
	}
	if cerr == nil {
		cerr = os.Rename(tmp, path+".1")
	}
	if cerr != nil {
		os.Remove(tmp)
	}
	if terr != nil {
		return false, terr
	}
	return true, cerr
}
