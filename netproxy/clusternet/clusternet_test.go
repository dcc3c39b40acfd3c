//go:build darwin || linux

package clusternet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/netproxy"
)

// member is a fake VM: its end of the datagram socketpair.
type member struct {
	name string
	mac  net.HardwareAddr
	vm   net.Conn // the VM's end, as a conn for its deadlines
	link *Link
}

func frame(dst, src net.HardwareAddr, payload string) []byte {
	b := append(append(append([]byte{}, dst...), src...), 0x08, 0x00)
	return append(b, payload...)
}

func (m *member) send(t *testing.T, f []byte) {
	t.Helper()
	if _, err := m.vm.Write(f); err != nil {
		t.Fatalf("%s: write: %v", m.name, err)
	}
}

// recv returns the next frame, or nil after d.
func (m *member) recv(t *testing.T, d time.Duration) []byte {
	t.Helper()
	m.vm.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 2048)
	n, err := m.vm.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	if err != nil {
		t.Fatalf("%s: read: %v", m.name, err)
	}
	return buf[:n]
}

func startServer(t *testing.T, members map[string]string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "netd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	sw := NewSwitch(nil)
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Switch: sw, Admit: func(name string) (Member, error) {
		mac, ok := members[name]
		if !ok {
			return Member{}, fmt.Errorf("%s is not a member of the cluster", name)
		}
		return Member{MAC: mac}, nil
	}, Stop: cancel}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		sw.Close()
	})
	return sock
}

func attach(t *testing.T, sock, name, mac string) (*member, error) {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	vmEnd, swEnd, err := netproxy.DatagramPair()
	if err != nil {
		t.Fatal(err)
	}
	defer swEnd.Close()
	vc, err := net.FileConn(vmEnd)
	vmEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vc.Close() })
	l, err := Attach(context.Background(), sock, name, swEnd)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { l.Close() })
	return &member{name: name, mac: hw, vm: vc, link: l}, nil
}

func TestSwitchMembers(t *testing.T) {
	sock := startServer(t, map[string]string{"demo-1": "5a:94:ef:77:01:01", "demo-2": "5a:94:ef:77:01:02"})
	m1, err := attach(t, sock, "demo-1", "5a:94:ef:77:01:01")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := attach(t, sock, "demo-2", "5a:94:ef:77:01:02")
	if err != nil {
		t.Fatal(err)
	}
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	// A broadcast (ARP) from 1 reaches 2 and teaches the switch 1's port.
	f := frame(bcast, m1.mac, "who-has")
	m1.send(t, f)
	if got := m2.recv(t, 5*time.Second); !bytes.Equal(got, f) {
		t.Fatalf("demo-2 got %q, want the broadcast", got)
	}
	if got := m1.recv(t, 100*time.Millisecond); got != nil {
		t.Fatalf("the sender got its own broadcast back: %q", got)
	}
	// Unicast back from 2 to 1.
	f = frame(m1.mac, m2.mac, "is-at")
	m2.send(t, f)
	if got := m1.recv(t, 5*time.Second); !bytes.Equal(got, f) {
		t.Fatalf("demo-1 got %q, want the unicast reply", got)
	}
	// A big frame (VXLAN-sized) crosses intact.
	big := frame(m2.mac, m1.mac, strings.Repeat("x", 1500))
	m1.send(t, big)
	if got := m2.recv(t, 5*time.Second); !bytes.Equal(got, big) {
		t.Fatalf("demo-2 got %d bytes, want %d", len(got), len(big))
	}
	// 1 posing as another MAC is dropped.
	m1.send(t, frame(bcast, net.HardwareAddr{0x5a, 0x94, 0xef, 0x77, 0x01, 0x09}, "spoof"))
	if got := m2.recv(t, 300*time.Millisecond); got != nil {
		t.Fatalf("a frame with a foreign source MAC was switched: %q", got)
	}
	st, err := Status(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 || st.Members[0].Member != "demo-1" || st.Members[0].Dropped != 1 {
		t.Fatalf("status = %+v, want demo-1 (1 dropped) and demo-2", st.Members)
	}

	// Detaching 2 (its hostd closing the control connection) removes its port.
	m2.link.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := Status(context.Background(), sock)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Members) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo-2 still attached after its link closed: %+v", st.Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNonMemberRefused(t *testing.T) {
	sock := startServer(t, map[string]string{"demo-1": "5a:94:ef:77:01:01"})
	if _, err := attach(t, sock, "other", "5a:94:ef:77:01:05"); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("attach of a non-member: err = %v, want a refusal", err)
	}
	st, err := Status(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 0 {
		t.Fatalf("members after a refused attach: %+v", st.Members)
	}
}

func TestStopEndsLinks(t *testing.T) {
	sock := startServer(t, map[string]string{"demo-1": "5a:94:ef:77:01:01"})
	m1, err := attach(t, sock, "demo-1", "5a:94:ef:77:01:01")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Stop(context.Background(), sock); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m1.link.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the member's link outlived netd's stop")
	}
}
