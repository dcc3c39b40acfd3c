//go:build darwin || linux

package cluster

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/netproxy"
	"github.com/berth-dev/berth/netproxy/clusternet"
)

func tempHome(t *testing.T) string {
	// Short: the control socket's path must fit a sockaddr_un.
	dir, err := os.MkdirTemp("", "bc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("BERTH_HOME", dir)
	return dir
}

func TestCreateAddresses(t *testing.T) {
	tempHome(t)
	a, err := Create("demo", 3, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	if a.Subnet != "10.77.1.0/24" || len(a.Members) != 3 || len(a.Managers()) != 2 {
		t.Fatalf("record %+v", a)
	}
	m, err := a.Member("demo-3")
	if err != nil || m.IP != "10.77.1.13" || m.MAC != "5a:94:ef:77:01:03" || m.Role != RoleWorker || m.Prefix() != "10.77.1.13/24" {
		t.Fatalf("demo-3 = %+v, %v", m, err)
	}
	if _, err := a.Member("other"); err == nil {
		t.Fatal("a non-member was found")
	}
	if a.Registry != "demo-1" {
		t.Fatalf("registry on %q, want demo-1", a.Registry)
	}
	b, err := Create("web", 1, 1, false)
	if err != nil || b.Index != 2 {
		t.Fatalf("second cluster: %+v, %v; want subnet index 2", b, err)
	}
	if _, err := Create("demo", 3, 2, true); err != nil {
		t.Fatalf("re-creating the same cluster: %v", err)
	}
	if _, err := Create("demo", 4, 2, true); err == nil {
		t.Fatal("re-creating with another shape was accepted")
	}
	st, err := os.Stat(filepath.Dir(mustPath(t, "demo", RecordFile)))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cluster dir mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	if err := Remove("demo"); err != nil {
		t.Fatal(err)
	}
	if c, err := Create("next", 1, 1, false); err != nil || c.Index != 1 {
		t.Fatalf("a freed subnet index is not reused: %+v, %v", c, err)
	}
	for _, bad := range []string{"", "Demo", "_x", strings.Repeat("a", 28)} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

func mustPath(t *testing.T, name, file string) string {
	p, err := Path(name, file)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRunNetd: netd serves its members and refuses others; stop removes its socket and lock.
func TestRunNetd(t *testing.T) {
	tempHome(t)
	if _, err := Create("demo", 2, 1, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunNetd(ctx, "demo", slog.New(slog.DiscardHandler)) }()
	sock := mustPath(t, "demo", NetdSock)
	deadline := time.Now().Add(5 * time.Second)
	for NetdRunning(ctx, "demo") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("netd did not answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	// A second netd for the same cluster steps aside.
	if err := RunNetd(ctx, "demo", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("second netd: %v", err)
	}
	attach := func(member string) (*clusternet.Link, error) {
		a, b, err := netproxy.DatagramPair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		defer b.Close()
		return clusternet.Attach(ctx, sock, member, b)
	}
	l, err := attach("demo-2")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := attach("solo"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("non-member attach: %v", err)
	}
	if err := StopNetd(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("netd did not stop")
	}
	for _, f := range []string{NetdSock, NetdLock} {
		if _, err := os.Stat(mustPath(t, "demo", f)); !os.IsNotExist(err) {
			t.Errorf("%s left after stop: %v", f, err)
		}
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the member's link outlived netd")
	}
}
