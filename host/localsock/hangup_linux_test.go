package localsock

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

func unixPair(t *testing.T) (client, server *net.UnixConn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.UnixConn), s.(*net.UnixConn)
}

// A client that sends its request, half-closes and waits is no hang-up; one that then
// closes (or dies) is, with its request still unread.
func TestWatchHangup(t *testing.T) {
	c, s := unixPair(t)
	gone := make(chan struct{})
	stop := WatchHangup(s, 5*time.Millisecond, func() { close(gone) })
	defer stop()
	if _, err := c.Write([]byte("GET /_ping HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gone:
		t.Fatal("a half-closed client was taken for gone")
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("a closed client was not seen gone")
	}
	stop() // after the watch ended by itself
}

func TestWatchHangupStop(t *testing.T) {
	_, s := unixPair(t)
	stop := WatchHangup(s, time.Hour, func() { t.Error("gone called") })
	done := make(chan struct{})
	go func() { stop(); stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the watch")
	}
}
