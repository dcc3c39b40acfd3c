package guestagent

import (
	"cmp"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/guestagent/proto"
)

// sortedPorts sorts a scan's result: the two scans walk the kernel's tables in the same
// order today, but nothing promises it, and the watcher sorts what it publishes anyway.
func sortedPorts(ps []proto.Port) []proto.Port {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b proto.Port) int { return cmp.Compare(a.Key(), b.Key()) })
	return ps
}

// sameScans runs both scans until two /proc/net reads around a sock_diag scan agree (other
// tests' processes open and close loopback sockets in this network namespace too) and
// returns the /proc/net result and the sock_diag one.
func sameScans(t *testing.T, loopback bool) (procNet, diag []proto.Port) {
	t.Helper()
	for try := 0; ; try++ {
		before, err := ScanListeners("/proc/net", loopback)
		if err != nil {
			t.Fatal(err)
		}
		diag, err := scanSockDiag(loopback)
		if err != nil {
			t.Fatalf("scanSockDiag: %v", err)
		}
		after, err := ScanListeners("/proc/net", loopback)
		if err != nil {
			t.Fatal(err)
		}
		before, diag, after = sortedPorts(before), sortedPorts(diag), sortedPorts(after)
		if (slices.Equal(before, after) && slices.Equal(before, diag)) || try == 20 {
			return before, diag
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScanSockDiagMatchesProcNet opens real listeners (TCP and UDP on 127.0.0.1, [::1],
// 0.0.0.0 and [::]) and the sockets that must not count (a connected UDP socket, an
// accepted and a dialled TCP connection, a socket bound to a non-loopback address) and
// checks that the sock_diag scan finds the same list as the /proc/net one, with the
// listeners in it.
func TestScanSockDiagMatchesProcNet(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	if s, err := openSockDiag(); err != nil {
		t.Skipf("no sock_diag here: %v", err)
	} else {
		s.Close()
	}
	hasV6 := true
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		hasV6 = false
		t.Logf("no IPv6 loopback, IPv6 cases left out: %v", err)
	} else {
		l.Close()
	}
	type want struct {
		proto, ip string
		port      int
		loopback  bool // listed only with loopback
	}
	var wants []want
	closeLater := func(c interface{ Close() error }) { t.Cleanup(func() { c.Close() }) }
	tcp := func(network, addr string, alsoIP string, loopback bool) *net.TCPListener {
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		closeLater(l)
		a := l.Addr().(*net.TCPAddr)
		wants = append(wants, want{"tcp", a.IP.String(), a.Port, loopback})
		if alsoIP != "" {
			wants = append(wants, want{"tcp", alsoIP, a.Port, loopback})
		}
		return l.(*net.TCPListener)
	}
	udp := func(network, addr string, alsoIP string, loopback bool) *net.UDPConn {
		c, err := net.ListenPacket(network, addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		closeLater(c)
		a := c.LocalAddr().(*net.UDPAddr)
		wants = append(wants, want{"udp", a.IP.String(), a.Port, loopback})
		if alsoIP != "" {
			wants = append(wants, want{"udp", alsoIP, a.Port, loopback})
		}
		return c.(*net.UDPConn)
	}
	lo4 := tcp("tcp4", "127.0.0.1:0", "", true)
	tcp("tcp4", "0.0.0.0:0", "", false)
	u4 := udp("udp4", "127.0.0.1:0", "", true)
	udp("udp4", "0.0.0.0:0", "", false)
	if hasV6 {
		tcp("tcp6", "[::1]:0", "127.0.0.1", true)
		tcp("tcp6", "[::]:0", "0.0.0.0", false)
		udp("udp6", "[::1]:0", "127.0.0.1", true)
		udp("udp6", "[::]:0", "0.0.0.0", false)
	}
	// Not listeners: a connected UDP socket (connect sends nothing), both ends of a loopback
	// TCP connection.
	cu, err := net.DialUDP("udp4", nil, u4.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	closeLater(cu)
	cc, err := net.Dial("tcp4", lo4.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	closeLater(cc)
	sc, err := lo4.Accept()
	if err != nil {
		t.Fatal(err)
	}
	closeLater(sc)
	notListed := []int{cu.LocalAddr().(*net.UDPAddr).Port, cc.LocalAddr().(*net.TCPAddr).Port}

	for _, loopback := range []bool{false, true} {
		t.Run("loopback="+strconv.FormatBool(loopback), func(t *testing.T) {
			procNet, diag := sameScans(t, loopback)
			if !slices.Equal(procNet, diag) {
				t.Fatalf("the scans differ:\n/proc/net  %+v\nsock_diag  %+v", procNet, diag)
			}
			has := map[string]bool{}
			for _, p := range diag {
				has[p.Key()] = true
				if p.Source != "listener" || p.Container != "" {
					t.Errorf("bad entry %+v", p)
				}
				if slices.Contains(notListed, p.Port) {
					t.Errorf("%+v is a connection, not a listener", p)
				}
			}
			for _, w := range wants {
				key := proto.Port{Proto: w.proto, GuestIP: w.ip, Port: w.port}.Key()
				if want := loopback || !w.loopback; has[key] != want {
					t.Errorf("%s listed: %v, want %v (scan: %+v)", key, has[key], want, diag)
				}
			}
			t.Logf("%d listeners, the same from both scans", len(diag))
		})
	}
}

// TestSockDiagKernelError: an answer the kernel refuses comes back as an error, which is
// what makes the watcher fall back to /proc/net (a kernel without udp_diag answers a UDP
// request the same way: ENOENT).
func TestSockDiagKernelError(t *testing.T) {
	s, err := openSockDiag()
	if err != nil {
		t.Skipf("no sock_diag here: %v", err)
	}
	defer s.Close()
	// No diag handler exists for protocol 200, nor a module that would provide one.
	err = s.dump(unix.AF_INET, 200, 1<<tcpListen, func([]byte) { t.Error("a message for protocol 200") })
	if !errors.Is(err, unix.ENOENT) {
		t.Fatalf("dump of an unknown protocol: %v, want ENOENT", err)
	}
	// The socket stays usable for the next request.
	n := 0
	if err := s.dump(unix.AF_INET, unix.IPPROTO_TCP, 1<<tcpListen, func([]byte) { n++ }); err != nil {
		t.Fatalf("dump after a refused one: %v", err)
	}
}

// TestListenerScannerFallback: when sock_diag fails the scan reads /proc/net, and it asks
// sock_diag again only after diagRetry.
func TestListenerScannerFallback(t *testing.T) {
	dir := t.TempDir()
	header := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(header+
		"   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fromProc := []proto.Port{{Proto: "tcp", GuestIP: "0.0.0.0", Port: 8080, Source: "listener"}}
	fromDiag := []proto.Port{{Proto: "tcp", GuestIP: "0.0.0.0", Port: 9090, Source: "listener"}}
	calls := 0
	var diagErr error
	s := &listenerScanner{procNet: dir, diag: func(bool) ([]proto.Port, error) {
		calls++
		if diagErr != nil {
			return nil, diagErr
		}
		return fromDiag, nil
	}}
	now := time.Now()
	check := func(what string, want []proto.Port, wantCalls int) {
		t.Helper()
		got, err := s.scan(now)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !slices.Equal(got, want) || calls != wantCalls {
			t.Fatalf("%s: got %+v after %d sock_diag calls, want %+v after %d", what, got, calls, want, wantCalls)
		}
	}
	check("sock_diag works", fromDiag, 1)
	diagErr = errors.New("sock_diag request refused: no such file or directory")
	check("sock_diag fails", fromProc, 2)
	now = now.Add(diagRetry - time.Second)
	check("within diagRetry", fromProc, 2) // not asked again
	diagErr = nil
	now = now.Add(time.Second)
	check("after diagRetry", fromDiag, 3)

	// No sock_diag at all (fixtures, other systems): /proc/net only.
	s = &listenerScanner{procNet: dir}
	check("procNet only", fromProc, 3)
	// A real kernel refusal takes the same path.
	s = &listenerScanner{procNet: dir, diag: func(loopback bool) ([]proto.Port, error) {
		calls++
		sd, err := openSockDiag()
		if err != nil {
			return nil, err
		}
		defer sd.Close()
		return nil, sd.dump(unix.AF_INET, 200, 1<<tcpListen, func([]byte) {})
	}}
	check("kernel refusal", fromProc, 4)
}

// FuzzSockDiagParse: the netlink answers as the scan decodes them (whatever the bytes, no
// panic, and only wildcard or loopback listeners come out).
func FuzzSockDiagParse(f *testing.F) {
	msg := func(typ uint16, seq uint32, body []byte) []byte {
		b := make([]byte, sizeofNlMsghdr, sizeofNlMsghdr+len(body)+3)
		ne := binary.NativeEndian
		ne.PutUint32(b[0:], uint32(sizeofNlMsghdr+len(body)))
		ne.PutUint16(b[4:], typ)
		ne.PutUint32(b[8:], seq)
		b = append(b, body...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	listen := make([]byte, sizeofInetDiagMsg)
	listen[0], listen[1], listen[4], listen[5] = unix.AF_INET, tcpListen, 0x1f, 0x90
	errBody := binary.NativeEndian.AppendUint32(nil, uint32(0xfffffffe)) // -ENOENT
	f.Add(append(msg(unix.SOCK_DIAG_BY_FAMILY, 1, listen), msg(unix.NLMSG_DONE, 1, make([]byte, 4))...), true)
	f.Add(msg(unix.NLMSG_ERROR, 1, errBody), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 20, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, loopback bool) {
		s := &sockDiag{seq: 1}
		for _, q := range diagQueries {
			var ports []proto.Port
			s.parse(b, func(m []byte) {
				if len(m) < sizeofInetDiagMsg {
					t.Fatalf("a message of %d bytes", len(m))
				}
				ports = q.appendPort(ports, m, loopback)
			})
			for _, p := range ports {
				ip := net.ParseIP(p.GuestIP)
				switch {
				case p.Proto != q.proto || p.Port < 1 || p.Port > 65535 || p.Source != "listener":
					t.Fatalf("bad port %+v", p)
				case ip == nil || !(ip.IsUnspecified() || ip.IsLoopback()):
					t.Fatalf("port %+v has an address that is no wildcard or loopback", p)
				case ip.IsLoopback() && !loopback:
					t.Fatalf("loopback port %+v without loopback", p)
				}
			}
		}
	})
}

// The scans' own cost, on this machine's sockets (say how many /proc/net/tcp lists when
// quoting it: the /proc/net read grows with every socket, connected ones included; sock_diag
// is asked for listeners only).
func BenchmarkScanListeners(b *testing.B) {
	for _, n := range []string{"tcp", "tcp6", "udp", "udp6"} {
		if data, err := os.ReadFile("/proc/net/" + n); err == nil {
			b.Logf("/proc/net/%s: %d sockets", n, strings.Count(string(data), "\n")-1)
		}
	}
	b.Run("procnet", func(b *testing.B) {
		for b.Loop() {
			if _, err := ScanListeners("/proc/net", true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sockdiag", func(b *testing.B) {
		for b.Loop() {
			if _, err := scanSockDiag(true); err != nil {
				b.Fatal(err)
			}
		}
	})
}
