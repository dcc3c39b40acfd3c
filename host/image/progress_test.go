package image

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressNoCarriageReturnsInPipes: into a pipe or file the progress is whole lines,
// at most one per 10 s plus the last; carriage returns are for terminals only.
func TestProgressNoCarriageReturnsInPipes(t *testing.T) {
	var out bytes.Buffer
	p := &progress{w: &out, name: "bundle", total: 1 << 20, tty: isTerminal(&out), last: time.Now()}
	if p.tty {
		t.Fatal("a buffer is not a terminal")
	}
	for range 1024 {
		p.Write(make([]byte, 1024))
	}
	p.flush(true)
	s := out.String()
	if strings.Contains(s, "\r") {
		t.Errorf("carriage return in piped progress: %q", s)
	}
	if s != "downloading bundle: 1.0 MiB / 1.0 MiB (100%)\n" {
		t.Errorf("piped progress %q", s)
	}

	// On a terminal it redraws one line.
	out.Reset()
	p = &progress{w: &out, name: "bundle", total: 100, tty: true}
	p.Write(make([]byte, 50))
	p.flush(true)
	if !strings.HasPrefix(out.String(), "\rdownloading bundle") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("terminal progress %q", out.String())
	}
}
