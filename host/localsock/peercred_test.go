//go:build linux || darwin

package localsock

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestPeerAllowed(t *testing.T) {
	for _, tt := range []struct {
		uid, self uint32
		want      bool
	}{
		{501, 501, true}, {0, 501, true}, {502, 501, false}, {65534, 0, false}, {0, 0, true},
	} {
		if got := peerAllowed(tt.uid, tt.self); got != tt.want {
			t.Errorf("peerAllowed(%d, %d) = %v", tt.uid, tt.self, got)
		}
	}
}

// TestPeerCredListener checks the listener on this OS: it is a uid check (on macOS too,
// where berth used to rely on the socket's mode alone), our own connections get through,
// and — when the test runs as root and can become nobody — another user's are dropped.
func TestPeerCredListener(t *testing.T) {
	// Not t.TempDir: its parent is 0700, and the other user must reach the socket.
	dir, err := os.MkdirTemp("", "berth-peercred")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "s.sock")
	raw, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o777) // as if someone loosened the mode: only the uid check is left
	ln := PeerCredListener(raw, slog.New(slog.DiscardHandler))
	defer ln.Close()
	if _, ok := ln.(*credListener); !ok {
		t.Fatalf("PeerCredListener returned %T: no peer check on this OS", ln)
	}
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()

	if os.Getuid() == 0 {
		// Another user dials: the connection is closed without being handed out.
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		helper := filepath.Join(dir, "helper")
		if err := os.WriteFile(helper, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(helper, "-test.run=^TestPeerCredHelper$")
		cmd.Env = append(os.Environ(), "BERTH_PEERCRED_DIAL="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if errors.Is(err, fs.ErrPermission) {
			t.Logf("cannot run a helper as nobody here (%v): the other-user case is not checked", err)
		} else if err != nil {
			t.Fatalf("helper as nobody: %v\n%s", err, out)
		}
		if err == nil {
			select {
			case c := <-accepted:
				c.Close()
				t.Fatal("a connection from uid 65534 was accepted")
			case <-time.After(100 * time.Millisecond):
			}
		}
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("mine"))
	select {
	case sc := <-accepted:
		defer sc.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "mine" {
			t.Fatalf("accepted a connection that is not ours: %q %v", buf, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("our own connection was not accepted")
	}
}

// TestPeerCredHelper is the other user's client of TestPeerCredListener: it dials, and
// expects the daemon end to close the connection.
func TestPeerCredHelper(t *testing.T) {
	path := os.Getenv("BERTH_PEERCRED_DIAL")
	if path == "" {
		t.Skip("helper process only")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if err != io.EOF && n != 0 {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection was not closed")
	}
}
