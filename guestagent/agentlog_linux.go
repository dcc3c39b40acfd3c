//go:build linux

package guestagent

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// maxAgentLog bounds the log in RAM (/run is a tmpfs): past it the file is rotated to
// AgentLogPath+".1".
const maxAgentLog = 8 << 20

// logSink is the agent log file. Until /run exists it buffers (bounded), so the boot's
// own log lines land in the file too.
type logSink struct {
	mu   sync.Mutex
	buf  []byte
	f    *os.File
	path string
	size int64
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if len(s.buf)+len(p) <= 1<<20 {
			s.buf = append(s.buf, p...)
		}
		return len(p), nil
	}
	if s.size+int64(len(p)) > maxAgentLog {
		s.rotate()
	}
	n, _ := s.f.Write(p)
	s.size += int64(n)
	// A log that cannot be written must not stop whoever is logging.
	return len(p), nil
}

func (s *logSink) open(path string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	s.f, s.path = f, path
	if st, err := f.Stat(); err == nil {
		s.size = st.Size()
	}
	n, _ := f.Write(s.buf)
	s.size += int64(n)
	s.buf = nil
	return nil
}

func (s *logSink) rotate() {
	s.f.Close()
	_ = os.Rename(s.path, s.path+".1")
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o640)
	if err != nil {
		// Keep writing nowhere rather than crash PID 1.
		f, _ = os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	s.f, s.size = f, 0
}

// teeLines copies r to every writer a line at a time, so lines from different writers
// never interleave mid-line in the log; errors on one writer do not starve the others.
func teeLines(r io.Reader, ws ...io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			for _, w := range ws {
				_, _ = w.Write(line)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// fanoutHandler sends each record to several handlers.
type fanoutHandler []slog.Handler

func (h fanoutHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, x := range h {
		if x.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (h fanoutHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, x := range h {
		if x.Enabled(ctx, r.Level) {
			errs = append(errs, x.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

func (h fanoutHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(fanoutHandler, len(h))
	for i, x := range h {
		out[i] = x.WithAttrs(as)
	}
	return out
}

func (h fanoutHandler) WithGroup(name string) slog.Handler {
	out := make(fanoutHandler, len(h))
	for i, x := range h {
		out[i] = x.WithGroup(name)
	}
	return out
}
