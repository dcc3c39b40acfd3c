package guestagent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/berth-dev/berth/guestagent/dockerapi"
	"github.com/berth-dev/berth/guestagent/proto"
)

func TestScanListeners(t *testing.T) {
	dir := t.TempDir()
	// 0.0.0.0:8080 listen, 127.0.0.1:9090 listen, an established connection, [::]:3000 listen,
	// udp 0.0.0.0:5353 unconnected, udp 10.0.0.2:68 bound to an address.
	os.WriteFile(filepath.Join(dir, "tcp"), []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:2382 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0100007F:2382 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
`), 0o644)
	os.WriteFile(filepath.Join(dir, "tcp6"), []byte(`  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 0
`), 0o644)
	os.WriteFile(filepath.Join(dir, "udp"), []byte(`  sl  local_address rem_address   st
   0: 00000000:14E9 00000000:0000 07 0
   1: 0200000A:0044 00000000:0000 07 0
`), 0o644)
	got, err := ScanListeners(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []proto.Port{
		{Proto: "tcp", GuestIP: "0.0.0.0", Port: 8080, Source: "listener"},
		{Proto: "tcp", GuestIP: "::", Port: 3000, Source: "listener"},
		{Proto: "tcp", GuestIP: "0.0.0.0", Port: 3000, Source: "listener"},
		{Proto: "udp", GuestIP: "0.0.0.0", Port: 5353, Source: "listener"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("public:\n got %+v\nwant %+v", got, want)
	}
	all, _ := ScanListeners(dir, true)
	if len(all) != 5 || all[1].GuestIP != "127.0.0.1" || all[1].Port != 9090 {
		t.Errorf("all: %+v", all)
	}
}

func TestContainerPortsAndMerge(t *testing.T) {
	var list []dockerContainer
	c := dockerContainer{Names: []string{"/web"}}
	c.Ports = append(c.Ports,
		dockerapi.Port{IP: "0.0.0.0", PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
		dockerapi.Port{PrivatePort: 443, Type: "tcp"}, // exposed, not published
	)
	list = append(list, c)
	ports := ContainerPorts(list)
	if len(ports) != 1 || ports[0].Port != 8080 || ports[0].Container != "web" {
		t.Fatalf("ContainerPorts = %+v", ports)
	}
	w := &PortWatcher{}
	ch, cancel := w.Subscribe()
	defer cancel()
	if first := <-ch; len(first) != 0 {
		t.Fatalf("initial list %+v", first)
	}
	// The engine's proxy listens on the published port: one entry, the container's.
	w.update(ports, []proto.Port{{Proto: "tcp", GuestIP: "0.0.0.0", Port: 8080, Source: "listener"}, {Proto: "tcp", GuestIP: "0.0.0.0", Port: 9000, Source: "listener"}})
	got := <-ch
	if len(got) != 2 || got[0].Source != "container" || got[1].Port != 9000 {
		t.Errorf("merged %+v", got)
	}
	// No change, no event.
	w.update(ports, nil)
	select {
	case l := <-ch:
		t.Errorf("unexpected event %+v", l)
	default:
	}
	w.update([]proto.Port{}, nil)
	if got := <-ch; len(got) != 2 || got[0].Port != 8080 || got[0].Source != "listener" {
		t.Errorf("after container stop: %+v", got)
	}
}

func TestGuestDialAddr(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0": "127.0.0.1:80", "": "127.0.0.1:80", "::": "[::1]:80", "127.0.0.1": "127.0.0.1:80"} {
		if got := guestDialAddr(in, 80); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}
