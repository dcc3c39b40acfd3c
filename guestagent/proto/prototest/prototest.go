// Package prototest holds what the tests of both sides of the agent protocol share.
package prototest

import (
	"net"
	"path/filepath"
	"testing"
)

// UnixPair returns two connected unix stream sockets: buffered and half-closable, unlike
// net.Pipe, as the agent channel and the docker socket are.
func UnixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); acc <- c }()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	return c.(*net.UnixConn), s.(*net.UnixConn)
}
