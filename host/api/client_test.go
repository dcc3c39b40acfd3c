package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentDaemon is a control socket that accepts connections and reads requests but never
// answers, like a hung hostd.
func silentDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hostd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	return sock
}

func TestStopDoesNotHangOnSilentDaemon(t *testing.T) {
	sock := silentDaemon(t)
	for _, tt := range []struct {
		name  string
		force bool
		ctx   func() (context.Context, context.CancelFunc)
		want  string
	}{
		{"graceful, own bound", false, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, "within 300ms"},
		{"force, own bound", true, func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, "within 200ms"},
		{"caller's deadline", false, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 250*time.Millisecond)
		}, "within 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(sock)
			c.StopTimeout, c.ForceStopTimeout = 300*time.Millisecond, 200*time.Millisecond
			ctx, cancel := tt.ctx()
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- c.Stop(ctx, tt.force) }()
			select {
			case err := <-done:
				if !errors.Is(err, ErrStopTimeout) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want ErrStopTimeout naming %s and %q", err, sock, tt.want)
				}
				if el := time.Since(start); el > 3*time.Second {
					t.Fatalf("returned after %s", el)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Stop still waiting for a daemon that never answers")
			}
		})
	}
}

func TestStopDefaultBounds(t *testing.T) {
	if DefaultStopTimeout <= 0 || DefaultForceStopTimeout <= 0 || DefaultForceStopTimeout >= DefaultStopTimeout {
		t.Fatalf("bounds %s, %s", DefaultStopTimeout, DefaultForceStopTimeout)
	}
}
